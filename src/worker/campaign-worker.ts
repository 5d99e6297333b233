import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import { DelayedError, Worker, type Job, type Queue } from 'bullmq';
import { redisEndpoint, type Config } from '../config/config.js';
import { makeKmsClient, makeRedis, makeS3Client, type RedisClient } from '../config/clients.js';
import { CipherPool } from '../crypto/pool.js';
import { KmsBatcher } from '../kms/batcher.js';
import { RedisRateLimiter } from '../kms/rate-limiter.js';
import { observeS3 } from '../s3/observe.js';
import type { Logger } from '../log/logger.js';
import type { RekeyMetrics } from '../metrics/index.js';
import type { AuditTrail } from '../trail/audit-trail.js';
import { objectId } from '../campaign/store.js';
import type { ObjectOutcome } from '../rotate/outcome.js';
import { Rekeyer } from '../rotate/rekey.js';
import { Rewrapper } from '../rotate/rewrap.js';
import { rotationTarget } from '../rotate/target.js';
import { processBatch, type BatchRotator, type ProcessorDeps, type ProcessorOptions } from '../campaign/processor.js';
import { connectionOf, makeQueue, makeVerifyQueue, QUEUE_NAME, queuePrefix, requestVerification, VERIFY_QUEUE_NAME, type BatchJob, type VerifyJob } from '../campaign/queue.js';
import { openReportStore } from '../campaign/report-store.js';
import { verifyCampaign } from '../campaign/verify.js';
import { makePlanQueue, PLAN_QUEUE_NAME, runSchedule, ScheduleStore, type ScheduleJob } from '../campaign/schedule.js';
import { isFinished, type CampaignSpec } from '../campaign/spec.js';
import { CampaignStore } from '../campaign/store.js';
import { UploadJournals } from '../campaign/upload-journals.js';
import { RotatorCache } from './rotators.js';
import { WatchedWorker } from './watched-worker.js';
import { RefusalRecorder, RetirementStore } from '../retirement/store.js';

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
  readonly trail?: AuditTrail;
}

/** Campaigns whose progress a worker exports: the newest ones; older ones are finished long ago. */
const PROGRESS_CAMPAIGNS = 20;

/** How long a paused campaign's job waits before it looks again. */
const PAUSE_RECHECK_MS = 2_000;

/** The longest wait between two attempts to reach Redis. */
const REDIS_RETRY_CAP_MS = 10_000;

/** How stale a batch's view of `cancel` may be: one Redis read per campaign and second, not per object. */
const CANCEL_RECHECK_MS = 1_000;

/**
 * BullMQ fails a job for good once it has stalled more than this many times, and a failed job's objects
 * never get an outcome, so the campaign could never finish. Taking a job over from a dead worker is
 * always safe (outcomes are recorded once, leftover uploads are aborted from the journal), so a job is
 * taken over however often its workers die.
 */
const MAX_STALLED_COUNT = Number.MAX_SAFE_INTEGER;

/**
 * A worker process's share of every campaign: it takes batch jobs from the one queue (incident
 * campaigns first) and rotates their objects, and plans the runs of scheduled campaigns when they
 * fire. Any number of these run on any number of hosts.
 */
export class CampaignWorker {
  readonly s3: S3Client;
  readonly kms: KMSClient;
  readonly pool: CipherPool;
  private readonly redis: RedisClient;
  private readonly store: CampaignStore;
  private readonly journals: UploadJournals;
  private readonly retirements: RetirementStore;
  private readonly refusals: RefusalRecorder;
  /** Refusals being recorded; close() waits for them, so none is lost with the Redis connection. */
  private readonly noting = new Set<Promise<unknown>>();
  private readonly queue;
  private readonly worker: WatchedWorker<BatchJob>;
  private readonly planner: WatchedWorker<ScheduleJob>;
  private readonly verifier: WatchedWorker<VerifyJob>;
  private readonly verifyQueue;
  private readonly planQueue;
  private readonly rotators: RotatorCache<{ rotator: BatchRotator; kms: KmsBatcher }>;
  private closing: Promise<void> | undefined;
  private changeWaiters: (() => void)[] = [];

  constructor(
    private readonly config: Config,
    private readonly options: CampaignWorkerOptions = {},
    private readonly log?: Logger,
  ) {
    this.s3 = makeS3Client(config, { patience: 'worker' });
    // One attempt per SDK call: the batcher retries, and only its retries take a token from the
    // campaign's shared rate limit and are counted (rekey_kms_throttles_total). The SDK's own retries
    // would hit a throttling KMS again outside the shared pace, and unseen.
    this.kms = makeKmsClient(config, { retries: 'none', patience: 'worker' });
    // Backoff from 0.5 s to 10 s, so an outage is one log line per attempt, not a flood.
    this.redis = makeRedis(config, { retryStrategy: (times) => Math.min(REDIS_RETRY_CAP_MS, 250 * 2 ** Math.min(times, 6)) });
    this.watchRedis();
    this.store = new CampaignStore(this.redis, config.redisPrefix);
    this.journals = new UploadJournals(this.redis, config.redisPrefix);
    this.rotators = new RotatorCache({
      isFinished: async (id) => isFinished(await this.store.state(id)),
      onSweepError: (err) => this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not tell whether a campaign finished; its KMS batcher stays until the next sweep'),
    });
    this.retirements = new RetirementStore(this.redis, config.redisPrefix);
    this.refusals = new RefusalRecorder(this.retirements, options.trail);
    this.queue = makeQueue(config, this.redis);
    this.verifyQueue = makeVerifyQueue(config, this.redis);
    this.pool = new CipherPool(options.threads === undefined ? {} : { threads: options.threads });
    const lockDuration = options.lockDurationMs ?? 30_000;
    const shared = {
      connection: connectionOf(config, this.redis),
      prefix: queuePrefix(config),
      lockDuration,
      // A killed worker's jobs are found by this check; it runs as often as a lock may live.
      stalledInterval: lockDuration,
      maxStalledCount: MAX_STALLED_COUNT,
      autorun: false,
    };
    this.planQueue = makePlanQueue(config, this.redis);
    const watched = <T>(name: string, queue: Queue<T>, process: (job: Job<T>, token: string | undefined) => Promise<unknown>, concurrency: number, failed: string) =>
      new WatchedWorker<T>({
        queue,
        process,
        make: (processor) => {
          const worker = new Worker<T>(name, processor, { ...shared, concurrency });
          worker.on('failed', (job, err) => this.log?.warn({ job: job?.id, err: err.message }, failed));
          worker.on('error', (err) => this.queueError(err));
          worker.on('completed', () => this.announceChange());
          return worker;
        },
        onReplace: (facts) => this.log?.warn(facts, 'a queue worker took no job while jobs waited; replaced with new Redis connections'),
        onError: (err) => this.queueError(err instanceof Error ? err : new Error(String(err))),
      });
    this.worker = watched(QUEUE_NAME, this.queue, (job, token) => this.process(job, token), options.concurrency ?? 4, 'batch job failed; it will be retried');
    // One plan at a time per process: a plan is bound by Redis round trips, not by this process.
    this.planner = watched(PLAN_QUEUE_NAME, this.planQueue, (job) => this.plan(job), 1, 'scheduled plan failed; it will be retried');
    // One verification at a time per process: it is a scan bound by S3 and KMS round trips.
    this.verifier = watched(VERIFY_QUEUE_NAME, this.verifyQueue, (job) => this.verify(job.data.c), 1, 'closing verification failed; it will be retried');
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
      return statuses.map((s) => ({
        campaign: s.id,
        planned: s.planned,
        done: s.done,
        ...(s.verification ? { remaining: s.verification.byKind } : {}),
      }));
    });
    metrics.provideRetiringKeys(async () =>
      (await this.retirements.retiring()).map((r) => ({ key: r.keyArn, state: r.state === 'pending-deletion' ? 'pending-deletion' : 'disabled', refusals: r.refusals, deletionDate: r.deletionDate })),
    );
    metrics.provideThreadPool(() => {
      const threads = this.pool.utilisation();
      return {
        threads: threads.length,
        busySeconds: threads.reduce((sum, t) => sum + t.busyMs / 1000, 0),
        activeStreams: threads.reduce((sum, t) => sum + t.activeStreams, 0),
      };
    });
  }

  /** Whether the worker can take jobs now: its Redis connection is up (/healthz). */
  ready(): boolean {
    return this.redis.status === 'ready';
  }

  /** BullMQ's own connections retry by themselves: while Redis is away their errors repeat what watchRedis says. */
  private queueError(err: Error): void {
    if (this.ready()) this.log?.warn({ err: err.message }, 'queue error');
  }

  /** One line per reconnection attempt while Redis is away, naming it and when the next try is. */
  private watchRedis(): void {
    let cause = '';
    const endpoint = redisEndpoint(this.config);
    this.redis.on('error', (err: Error & { code?: string }) => {
      cause = err.code ?? err.message;
    });
    this.redis.on('reconnecting', (delayMs: number) => this.log?.warn({ redis: endpoint, cause, retryInMs: delayMs }, 'Redis unreachable; retrying'));
    this.redis.on('ready', () => {
      if (cause) this.log?.info({ redis: endpoint }, 'Redis reachable again');
      cause = '';
    });
  }

  /**
   * Resolves when this process next finishes a job (a batch, a plan, a verification): a campaign's state
   * may have moved, so whoever watches it in this process (`rekey run`) looks now, not at its next poll.
   */
  nextChange(): Promise<void> {
    return new Promise((resolve) => this.changeWaiters.push(resolve));
  }

  private announceChange(): void {
    const waiters = this.changeWaiters;
    this.changeWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Starts taking jobs; resolves when the worker is closed. */
  async run(): Promise<void> {
    await Promise.all([this.worker.run(), this.planner.run(), this.verifier.run()]);
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([this.worker.waitUntilReady(), this.planner.waitUntilReady(), this.verifier.waitUntilReady()]);
  }

  /**
   * Stops taking jobs and waits for the ones in flight. With `force`, in-flight jobs are released
   * unfinished; their uploads are never completed, and another worker takes them over.
   */
  close(force = false): Promise<void> {
    if (force && this.closing) void Promise.all([this.worker.close(true), this.planner.close(true), this.verifier.close(true)]);
    this.closing ??= (async () => {
      await Promise.all([this.worker.close(force), this.planner.close(force), this.verifier.close(force)]);
      await this.pool.close();
      await this.queue.close();
      await this.verifyQueue.close();
      await this.planQueue.close();
      await Promise.all(this.noting);
      await this.rotators.idle();
      await this.redis.quit();
      await this.options.trail?.flush();
      this.s3.destroy();
      this.kms.destroy();
    })();
    return this.closing;
  }

  private async plan(job: Job<ScheduleJob>): Promise<unknown> {
    const result = await runSchedule({ s3: this.s3, store: this.store, queue: this.queue, verifyQueue: this.verifyQueue, schedules: new ScheduleStore(this.redis, this.config.redisPrefix) }, job);
    if (result.kind === 'planned' && result.spec) this.options.trail?.campaign('created', result.campaignId, result.spec);
    const summary = result.kind === 'planned' ? { kind: result.kind, campaignId: result.campaignId } : result;
    this.log?.info({ schedule: job.data.s, ...summary }, 'scheduled run');
    return summary;
  }

  private async process(job: Job<BatchJob>, token: string | undefined): Promise<unknown> {
    const result = await processBatch(
      {
        s3: this.s3,
        store: this.store,
        journals: this.journals,
        queue: this.queue,
        rotatorFor: (id, spec) => this.rotatorFor(id, spec).rotator,
        reportsFor: (id, spec) => openReportStore(this.s3, spec.reportTo, id),
        onSettled: (id) => requestVerification(this.verifyQueue, id),
        observe: observeWith(this.options.metrics, this.options.trail, (outcome, campaign) => this.noteRefusal(outcome, campaign)),
      },
      job.data,
      job.id!,
      this.options.processor,
    );
    if (result.kind === 'paused') {
      await job.moveToDelayed(Date.now() + PAUSE_RECHECK_MS, token);
      throw new DelayedError();
    }
    return result;
  }

  /**
   * The closing verification of a campaign whose objects all settled: the scope re-scanned with the
   * key-usage scan at the campaign's KMS pace; the remaining entries to the report store, the counts to
   * the campaign, which ends `done` or `done-with-remainder`.
   */
  private async verify(id: string): Promise<unknown> {
    if ((await this.store.state(id)) !== 'verifying') return { skipped: 'not verifying' };
    const spec = await this.store.spec(id);
    const verification = await verifyCampaign({ s3: this.s3, kms: this.rotatorFor(id, spec).kms, reports: openReportStore(this.s3, spec.reportTo, id) }, spec);
    const state = await this.store.recordVerification(id, verification);
    this.options.trail?.verified(id, state, verification);
    // The campaign is over: its KMS batcher and cache go with it.
    this.rotators.delete(id);
    this.log?.info({ campaign: id, state, remaining: verification.remaining, unreadable: verification.unreadable }, 'campaign verified');
    return { state, remaining: verification.remaining, unreadable: verification.unreadable };
  }

  /** A key refused as disabled or pending deletion may be one rekey is retiring: someone still needs it. */
  private noteRefusal(outcome: ObjectOutcome, campaign: string): void {
    if (outcome.reason !== 'kms-disabled') return;
    const { bucket, key, versionId } = outcome.ref;
    const noted = this.refusals
      .note([outcome.message, outcome.oldKeyId], { source: 'campaign', campaign, bucket, key, versionId, reason: outcome.reason })
      .catch((err: unknown) => this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not record a refusal for a retiring key'))
      .finally(() => this.noting.delete(noted));
    this.noting.add(noted);
  }

  private rotatorFor(id: string, spec: CampaignSpec): { rotator: BatchRotator; kms: KmsBatcher } {
    return this.rotators.get(id, () => this.makeRotator(id, spec));
  }

  private makeRotator(id: string, spec: CampaignSpec): { rotator: BatchRotator; kms: KmsBatcher } {
    const kms = new KmsBatcher({
      kms: this.kms,
      limiter: new RedisRateLimiter({ redis: this.redis, prefix: this.config.redisPrefix, campaign: id, ratePerSecond: spec.kmsRequestsPerSecond }),
      ...(this.options.metrics ? { observer: this.options.metrics.kms } : {}),
    });
    const target = rotationTarget(spec);
    const stopped = cachedFor(CANCEL_RECHECK_MS, async () => (await this.store.state(id)) === 'cancelled');
    const rotator =
      spec.mode === 'rewrap'
        ? new Rewrapper({ s3: this.s3, kms, stopped }, target)
        : new Rekeyer({ s3: this.s3, kms, pool: this.pool, objectConcurrency: this.options.objectConcurrency ?? 4, stopped }, target);
    return { rotator, kms };
  }
}

/** `check`'s answer, asked again only once it is `ttlMs` old; concurrent callers share one question. */
function cachedFor(ttlMs: number, check: () => Promise<boolean>): () => Promise<boolean> {
  let answer: { at: number; value: Promise<boolean> } | undefined;
  return () => {
    if (answer === undefined || Date.now() - answer.at >= ttlMs) {
      const value = check();
      answer = { at: Date.now(), value };
      value.catch(() => (answer = undefined));
    }
    return answer.value;
  };
}

/**
 * Counts each object in flight from the start of its batch until its outcome, final or back to the
 * queue, and appends final outcomes to the audit trail.
 */
function observeWith(
  metrics: RekeyMetrics | undefined,
  trail: AuditTrail | undefined,
  onFinal: (outcome: ObjectOutcome, campaign: string) => void,
): NonNullable<ProcessorDeps['observe']> {
  return (campaign, mode, refs) => {
    const inFlight = new Map(refs.map((ref) => [objectId(ref), metrics?.objectStarted({ campaign, mode })]));
    return (outcome, final) => {
      const handle = inFlight.get(objectId(outcome.ref));
      if (!final) return handle?.release();
      handle?.done(outcome);
      trail?.object(campaign, outcome);
      onFinal(outcome, campaign);
    };
  };
}
