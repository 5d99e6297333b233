import { hostname } from 'node:os';
import type { Command } from 'commander';
import { openConfiguredAuditTrail } from '../trail/audit-trail.js';
import { CampaignWorker } from '../worker/campaign-worker.js';
import { loadConfig } from '../config/config.js';
import { makeLogger, type Logger } from '../log/logger.js';
import { createMetrics, registerScrapeTarget, startMetricsServer, type RekeyMetrics } from '../metrics/index.js';
import { positiveInt } from './options.js';

/** A second signal stops waiting for in-flight jobs: they are released and another worker takes them. */
function onSignals(stop: (force: boolean) => void): void {
  let received = 0;
  const handler = () => {
    received += 1;
    stop(received > 1);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

interface WorkerFlags {
  readonly concurrency: number;
  readonly threads?: number;
  readonly lockSeconds: number;
  readonly metricsPort?: number;
  readonly metricsHost: string;
}

/**
 * Serves /metrics and, when REKEY_PROMETHEUS_TARGETS_DIR names a Prometheus file_sd folder (the local
 * stack's), registers there; returns what undoes both.
 */
async function serveMetrics(metrics: RekeyMetrics, flags: WorkerFlags, log: Logger, health: () => boolean): Promise<() => Promise<void>> {
  if (flags.metricsPort === undefined) return async () => {};
  const server = await startMetricsServer({ port: flags.metricsPort, host: flags.metricsHost, registry: metrics.registry, health });
  log.info({ url: server.url }, 'metrics served');
  const dir = process.env.REKEY_PROMETHEUS_TARGETS_DIR;
  const host = flags.metricsHost === '0.0.0.0' ? '127.0.0.1' : flags.metricsHost;
  const name = `worker-${hostname()}-${process.pid}`;
  const unregister = dir ? await registerScrapeTarget({ dir, name, address: `${host}:${server.port}`, labels: { instance: name } }) : async () => {};
  return async () => {
    await unregister();
    await server.close();
  };
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('Run a worker process: take batch jobs of every campaign and rotate their objects (SIGTERM stops it cleanly)')
    .option('--concurrency <n>', 'batch jobs at once', positiveInt('--concurrency'), 4)
    .option('--threads <n>', 'cipher threads for rekey mode (default: one per core)', positiveInt('--threads'))
    .option('--lock-seconds <n>', 'how long a killed worker keeps its jobs before another worker takes them over', positiveInt('--lock-seconds'), 30)
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port (0: any free port)', (v) => (v === '0' ? 0 : positiveInt('--metrics-port')(v)))
    .option('--metrics-host <host>', 'address the metrics server listens on (0.0.0.0 in containers)', '127.0.0.1')
    .action(async (flags: WorkerFlags) => {
      const config = loadConfig();
      const log = makeLogger(config.logLevel, { role: 'worker' });
      const metrics = createMetrics();
      const worker = new CampaignWorker(
        config,
        {
          concurrency: flags.concurrency,
          lockDurationMs: flags.lockSeconds * 1000,
          metrics,
          trail: await openConfiguredAuditTrail(config),
          ...(flags.threads ? { threads: flags.threads } : {}),
        },
        log,
      );
      const stopMetrics = await serveMetrics(metrics, flags, log, () => worker.ready());
      let closing: Promise<void> | undefined;
      onSignals((force) => {
        log.info({ force }, 'stopping: finishing in-flight jobs');
        closing = worker.close(force);
      });
      log.info({ concurrency: flags.concurrency, threads: worker.pool.threads }, 'worker started');
      await worker.run();
      await closing;
      await stopMetrics();
      log.info('worker stopped');
    });
}
