import type { Command } from 'commander';
import { Cluster } from 'ioredis';
import { makeKmsClient, makeRedis, makeS3Client } from '../config/clients.js';
import { loadConfig, type Config } from '../config/config.js';
import { probeKms } from '../kms/probe.js';
import { probeS3 } from '../s3/probe.js';

export interface Check {
  readonly part: 'redis' | 's3' | 'kms';
  readonly ok: boolean;
  readonly detail: string;
}

async function checkRedis(config: Config): Promise<Check> {
  const redis = makeRedis(config, { failFast: true });
  // A cluster client's connect() says only that no node answered; its error events say why.
  let why: Error | undefined;
  redis.on('error', (err: Error & { lastNodeError?: Error }) => (why = err.lastNodeError ?? err));
  try {
    await redis.connect();
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    /* Precondition: a cluster is reached through a cluster client, or commands meet MOVED. */
    if (!(redis instanceof Cluster) && /^cluster_enabled:1/m.test(await redis.info('cluster'))) {
      return { part: 'redis', ok: false, detail: `${config.redisUrl} is a Redis Cluster node: set REKEY_REDIS_CLUSTER=true` };
    }
    const policies = await Promise.all(nodes.map(async (node) => ((await node.config('GET', 'maxmemory-policy')) as [string, string])[1]));
    const evicting = policies.find((policy) => policy !== 'noeviction');
    /* Precondition: BullMQ loses jobs if Redis may evict keys. */
    if (evicting !== undefined) {
      return { part: 'redis', ok: false, detail: `maxmemory-policy is ${evicting}; BullMQ needs noeviction` };
    }
    const what = redis instanceof Cluster ? `Redis Cluster of ${nodes.length} masters, ` : '';
    return { part: 'redis', ok: true, detail: `${config.redisUrl} (${what}maxmemory-policy noeviction)` };
  } catch (err) {
    const cause = why && why.message !== (err as Error).message ? ` (${why.message})` : '';
    return { part: 'redis', ok: false, detail: `${config.redisUrl}: ${(err as Error).message}${cause}` };
  } finally {
    redis.disconnect();
  }
}

async function checkAws(part: 'kms' | 's3', config: Config): Promise<Check> {
  const endpoint = (part === 's3' ? config.s3Endpoint : config.kmsEndpoint) ?? `AWS ${config.region}`;
  try {
    if (part === 's3') {
      const s3 = makeS3Client(config, { retries: 'none' });
      await probeS3(s3);
      s3.destroy();
    } else {
      const kms = makeKmsClient(config, { retries: 'none' });
      await probeKms(kms);
      kms.destroy();
    }
    return { part, ok: true, detail: endpoint };
  } catch (err) {
    return { part, ok: false, detail: `${endpoint}: ${(err as Error).name}: ${(err as Error).message}` };
  }
}

export async function runChecks(config: Config): Promise<Check[]> {
  return Promise.all([checkRedis(config), checkAws('s3', config), checkAws('kms', config)]);
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Check that Redis, S3 and KMS are reachable with the current configuration')
    .option('--json', 'print the checks as JSON')
    .action(async (opts: { json?: boolean }) => {
      const checks = await runChecks(loadConfig());
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(checks)}\n`);
      } else {
        for (const c of checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.part.padEnd(5)} ${c.detail}\n`);
      }
      if (checks.some((c) => !c.ok)) process.exitCode = 1;
    });
}
