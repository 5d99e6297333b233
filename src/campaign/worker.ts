import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import { DelayedError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/config.js';
import { makeKmsClient, makeRedis, makeS3Client } from '../config/clients.js';
import { CipherPool } from '../crypto/pool.js';
import { KmsBatcher } from '../kms/batcher.js';
import { RedisRateLimiter } from '../kms/rate-limiter.js';
import { observeS3 } from '../s3/observe.js';
import type { Logger } from '../log/logger.js';
import type { RekeyMetrics } from '../metrics/index.js';
import type { AuditTrail } from './audit-trail.js';
import { objectId } from './store.js';
import { Rekeyer } from '../rotate/rekey.js';
import { Rewrapper } from '../rotate/rewrap.js';
import { rotationTarget } from '../rotate/target.js';
import { processBatch, type BatchRotator, type ProcessorDeps, type ProcessorOptions } from './processor.js';
import { connectionOf, makeQueue, QUEUE_NAME, type BatchJob } from './queue.js';
import type { CampaignSpec } from './spec.js';
import { CampaignStore } from './store.js';

export interface CampaignWorkerOptions {
  /** Batch jobs processed at once by this process. */
  readonly concurrency?: number;
  /** Cipher threads for `rekey` mode; default: the machine's cores. */
  readonly threads?: number;
  /** Objects streamed at once per `rekey` batch. */
  readonly objectConcurrency?: number;
  /** How long a job's lock lives without renewal before another worker may take the job over. */
  readonly lockDurationMs?: number;
  readonly processor?: ProcessorOptions;
  /** Where this worker's objects, KMS calls, queue and cipher threads are counted. */
  readonly metrics?: RekeyMetrics;
  /** Where every final object outcome is appended for the user's SIEM. */
  readonly audit?: AuditTrail;
}

/** Campaigns whose progress a worker exports: the newest ones; older ones are finished long ago. */
const PROGRESS_CAMPAIGNS = 20;

/** How long a paused campaign's job waits before it looks again. */
const PAUSE_RECHECK_MS = 2_000;

/**
 * A worker process's share of every campaign: it takes batch jobs from the one queue (incident
 * campaigns first) and rotates their objects. Any number of these run on any number of hosts.
 */
export class CampaignWorker {
  readonly s3: S3Client;
  readonly kms: KMSClient;
  readonly pool: CipherPool;
  private readonly redis: Redis;
  private readonly store: CampaignStore;
  private readonly queue;
  private readonly worker: Worker<BatchJob>;
  private readonly rotators = new Map<string, BatchRotator>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly config: Config,
    private readonly options: CampaignWorkerOptions = {},
    private readonly log?: Logger,
  ) {
    this.s3 = makeS3Client(config);
    this.kms = makeKmsClient(config);
    this.redis = makeRedis(config);
    this.store = new CampaignStore(this.redis, config.redisPrefix);
    this.queue = makeQueue(config);
    this.pool = new CipherPool(options.threads === undefined ? {} : { threads: options.threads });
    this.worker = new Worker<BatchJob>(QUEUE_NAME, (job, token) => this.process(job, token), {
      connection: connectionOf(config),
      prefix: config.redisPrefix,
      concurrency: options.concurrency ?? 4,
      lockDuration: options.lockDurationMs ?? 30_000,
      // A killed worker's jobs are found by this check; it runs as often as a lock may live.
      stalledInterval: options.lockDurationMs ?? 30_000,
      autorun: false,
    });
    this.worker.on('failed', (job, err) => this.log?.warn({ job: job?.id, err: err.message }, 'batch job failed; it will be retried'));
    if (options.metrics) this.export(options.metrics);
  }

  private export(metrics: RekeyMetrics): void {
    observeS3(this.s3, metrics.s3);
    metrics.provideQueueCounts(() => this.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed').then(
      ({ prioritized = 0, waiting = 0, ...rest }) => ({ ...rest, waiting: waiting + prioritized }),
    ));
    metrics.provideCampaignProgress(async () => {
      const ids = (await this.store.list()).slice(-PROGRESS_CAMPAIGNS);
      const statuses = await Promise.all(ids.map((id) => this.store.status(id)));
      return statuses.map((s) => ({ campaign: s.id, planned: s.planned, done: s.done }));
    });
    metrics.provideThreadPool(() => {
      const threads = this.pool.utilisation();
      return {
        threads: threads.length,
        busySeconds: threads.reduce((sum, t) => sum + t.busyMs / 1000, 0),
        activeStreams: threads.reduce((sum, t) => sum + t.activeStreams, 0),
      };
    });
  }

  /** Starts taking jobs; resolves when the worker is closed. */
  run(): Promise<void> {
    return this.worker.run();
  }

  async waitUntilReady(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /**
   * Stops taking jobs and waits for the ones in flight. With `force`, in-flight jobs are released
   * unfinished; their uploads are never completed, and another worker takes them over.
   */
  close(force = false): Promise<void> {
    if (force && this.closing) void this.worker.close(true);
    this.closing ??= (async () => {
      await this.worker.close(force);
      await this.pool.close();
      await this.queue.close();
      await this.redis.quit();
      await this.options.audit?.flush();
      this.s3.destroy();
      this.kms.destroy();
    })();
    return this.closing;
  }

  private async process(job: Job<BatchJob>, token: string | undefined): Promise<unknown> {
    const result = await processBatch(
      {
        s3: this.s3,
        store: this.store,
        queue: this.queue,
        rotatorFor: (id, spec) => this.rotatorFor(id, spec),
        observe: observeWith(this.options.metrics, this.options.audit),
      },
      job.data,
      this.options.processor,
    );
    if (result.kind === 'paused') {
      await job.moveToDelayed(Date.now() + PAUSE_RECHECK_MS, token);
      throw new DelayedError();
    }
    return result;
  }

  private rotatorFor(id: string, spec: CampaignSpec): BatchRotator {
    const cached = this.rotators.get(id);
    if (cached) return cached;
    const kms = new KmsBatcher({
      kms: this.kms,
      limiter: new RedisRateLimiter({ redis: this.redis, prefix: this.config.redisPrefix, campaign: id, ratePerSecond: spec.kmsRequestsPerSecond }),
      ...(this.options.metrics ? { observer: this.options.metrics.kms } : {}),
    });
    const target = rotationTarget(spec);
    const rotator =
      spec.mode === 'rewrap'
        ? new Rewrapper({ s3: this.s3, kms }, target)
        : new Rekeyer({ s3: this.s3, kms, pool: this.pool, objectConcurrency: this.options.objectConcurrency ?? 4 }, target);
    this.rotators.set(id, rotator);
    return rotator;
  }
}

/**
 * Counts each object in flight from the start of its batch until its outcome, final or back to the
 * queue, and appends final outcomes to the audit trail.
 */
function observeWith(metrics: RekeyMetrics | undefined, audit: AuditTrail | undefined): NonNullable<ProcessorDeps['observe']> {
  return (campaign, mode, refs) => {
    const inFlight = new Map(refs.map((ref) => [objectId(ref), metrics?.objectStarted({ campaign, mode })]));
    return (outcome, final) => {
      const handle = inFlight.get(objectId(outcome.ref));
      if (!final) return handle?.release();
      handle?.done(outcome);
      audit?.object(campaign, outcome);
    };
  };
}
