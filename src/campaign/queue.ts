import { createHash } from 'node:crypto';
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { RedisClient } from '../config/clients.js';
import type { Config } from '../config/config.js';
import type { ObjectRef } from '../rotate/outcome.js';
import { jobPriority, type Priority } from './spec.js';

/** One queue serves every campaign; job priority puts incident campaigns first. */
export const QUEUE_NAME = 'rotate';

/**
 * A job is a batch of object keys of one bucket and its campaign id: never key material, never
 * content (docs/design.md §3). `a` counts the attempts of the objects it carries.
 */
export interface BatchJob {
  readonly c: string;
  readonly b: string;
  readonly k: readonly string[];
  readonly v?: readonly (string | null)[];
  readonly a?: number;
}

/**
 * Where BullMQ connects. On one Redis, options: BullMQ makes and closes its own connections. A
 * cluster must be handed over as a client, which BullMQ shares without closing: `redis`, whose owner
 * closes it after the queues and workers on it (BullMQ duplicates it for its blocking connections).
 */
export function connectionOf(config: Config, redis: RedisClient): ConnectionOptions {
  return config.redisCluster ? redis : ({ url: config.redisUrl, maxRetriesPerRequest: null } as ConnectionOptions);
}

/**
 * BullMQ's scripts span a queue's keys, so on a cluster they carry one hash tag, as BullMQ documents:
 * the prefix in braces. Only the queues' keys: rekey's own carry their campaign's or schedule's tag.
 */
export function queuePrefix(config: Config): string {
  return config.redisCluster ? `{${config.redisPrefix}}` : config.redisPrefix;
}

/** A queue of rekey's on `redis` (see connectionOf for who closes what). */
export function openQueue<T>(name: string, config: Config, redis: RedisClient): Queue<T> {
  return new Queue<T>(name, { connection: connectionOf(config, redis), prefix: queuePrefix(config) });
}

export function makeQueue(config: Config, redis: RedisClient): Queue<BatchJob> {
  return openQueue<BatchJob>(QUEUE_NAME, config, redis);
}

export function refsOf(job: BatchJob): ObjectRef[] {
  return job.k.map((key, i) => ({ bucket: job.b, key, ...(job.v?.[i] ? { versionId: job.v[i]! } : {}) }));
}

/** Groups refs into jobs of at most `size` objects, one bucket per job. */
export function batchesOf(campaignId: string, refs: readonly ObjectRef[], size: number, attempt = 0): BatchJob[] {
  const byBucket = new Map<string, ObjectRef[]>();
  for (const ref of refs) {
    const list = byBucket.get(ref.bucket);
    if (list) list.push(ref);
    else byBucket.set(ref.bucket, [ref]);
  }
  const jobs: BatchJob[] = [];
  for (const [bucket, list] of byBucket) {
    for (let i = 0; i < list.length; i += size) {
      const slice = list.slice(i, i + size);
      const versioned = slice.some((r) => r.versionId);
      jobs.push({
        c: campaignId,
        b: bucket,
        k: slice.map((r) => r.key),
        ...(versioned ? { v: slice.map((r) => r.versionId ?? null) } : {}),
        ...(attempt ? { a: attempt } : {}),
      });
    }
  }
  return jobs;
}

export interface EnqueueOptions {
  readonly priority: Priority;
  /** Same seed, same job ids: a plan resumed after a crash re-adds the same jobs, which BullMQ ignores. */
  readonly idSeed?: string;
  readonly delayMs?: number;
}

const JOB_DEFAULTS: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 2000 },
  removeOnComplete: true,
  removeOnFail: { count: 10_000 },
};

export async function enqueue(queue: Queue<BatchJob>, jobs: readonly BatchJob[], options: EnqueueOptions): Promise<void> {
  if (jobs.length === 0) return;
  await queue.addBulk(
    jobs.map((data, i) => ({
      name: 'batch',
      data,
      opts: {
        ...JOB_DEFAULTS,
        priority: jobPriority(options.priority),
        ...(options.delayMs ? { delay: options.delayMs } : {}),
        ...(options.idSeed ? { jobId: `${data.c}-${createHash('sha1').update(`${options.idSeed}|${i}`).digest('hex')}` } : {}),
      },
    })),
  );
}

/** A campaign's closing verification, run by one worker once its last object settled. */
export const VERIFY_QUEUE_NAME = 'verify';

export interface VerifyJob {
  readonly c: string;
}

export function makeVerifyQueue(config: Config, redis: RedisClient): Queue<VerifyJob> {
  return openQueue<VerifyJob>(VERIFY_QUEUE_NAME, config, redis);
}

/**
 * Asks for a campaign's verification. One job id per campaign: asked twice (a worker that recorded
 * the last batch, then the one that took its job over), it runs once; removed once done, so a
 * campaign settled again after `retry` is verified again.
 */
export async function requestVerification(queue: Queue<VerifyJob>, campaignId: string): Promise<void> {
  await queue.add('verify', { c: campaignId }, { jobId: `verify-${campaignId}`, attempts: 8, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: true, removeOnFail: { count: 1000 } });
}
