import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Config } from '../../src/config/config.js';
import { startWorker } from './cli.js';

/** What the reliability runs pass every worker: a short lock, so a killed worker's jobs come back fast. */
export const CRASH_WORKER_ARGS = ['--concurrency', '4', '--lock-seconds', '3', '--threads', '1'] as const;

export interface FleetWorker {
  readonly index: number;
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<void>;
}

export interface FleetOptions {
  readonly config: Config;
  readonly args?: readonly string[];
  /** Extra environment per worker, e.g. its own S3 endpoint behind its own fault proxy. */
  readonly env?: (index: number) => NodeJS.ProcessEnv;
}

/**
 * `rekey worker` processes as a user runs them, which the test can SIGKILL at any moment. Every
 * worker ever started is kept, so its output can be searched after the run.
 */
export class WorkerFleet {
  readonly started: FleetWorker[] = [];
  kills = 0;

  constructor(private readonly options: FleetOptions) {}

  start(env: NodeJS.ProcessEnv = {}): FleetWorker {
    const index = this.started.length;
    const child = startWorker(this.options.config, this.options.args ?? CRASH_WORKER_ARGS, { REDIS_URL: this.options.config.redisUrl, ...this.options.env?.(index), ...env });
    const exited = once(child, 'close').then(() => undefined);
    const worker = { index, child, output: child.output, exited };
    this.started.push(worker);
    return worker;
  }

  live(): FleetWorker[] {
    return this.started.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
  }

  async kill(worker: FleetWorker): Promise<void> {
    if (worker.child.exitCode !== null || worker.child.signalCode !== null) return;
    worker.child.kill('SIGKILL');
    await worker.exited;
    this.kills += 1;
  }

  /** SIGTERM: each worker finishes its jobs and exits; a worker that does not within the grace is killed. */
  async stopAll(graceMs = 30_000): Promise<void> {
    await Promise.all(
      this.live().map(async (w) => {
        w.child.kill('SIGTERM');
        const timer = setTimeout(() => w.child.kill('SIGKILL'), graceMs);
        await w.exited;
        clearTimeout(timer);
      }),
    );
  }

  output(): string {
    return this.started.map((w) => w.output()).join('\n');
  }
}

/** Resident set size of a process from /proc, in bytes; undefined once it exited. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    return undefined;
  }
}

export interface RssSample {
  readonly atMs: number;
  readonly worker: number;
  readonly rss: number;
}

/** Samples the RSS of every live worker of a fleet at a fixed interval until stopped. */
export function sampleRss(fleet: WorkerFleet, intervalMs: number): { samples: RssSample[]; stop: () => void } {
  const samples: RssSample[] = [];
  const started = Date.now();
  const timer = setInterval(() => {
    for (const w of fleet.live()) {
      void rssBytes(w.child.pid!).then((rss) => {
        if (rss !== undefined) samples.push({ atMs: Date.now() - started, worker: w.index, rss });
      });
    }
  }, intervalMs);
  return { samples, stop: () => clearInterval(timer) };
}
