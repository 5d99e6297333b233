import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReasonCode } from '../errors.js';
import { EtaEstimator, monotonicSeconds, shareInFlight, UtilizationMeter, type Clock } from './derived.js';

/*
 * Every label here has a value from a small, fixed set (modes, outcomes, reason codes, API operation names,
 * queue states) or a campaign id. Never an object key, bucket key or anything from an object: that would
 * leak data into Prometheus and give each object its own series.
 */

/** The modes of docs/design.md §2, a superset of rotate's `Mode`, so an `ObjectOutcome` can be passed as it is. */
export type RotationMode = 'rewrap' | 'rekey' | 'sse';

/** `ok`, or the stable reason code of the failure (`kms-throttled`, `kms-denied`, `s3-error`, …). */
export type CallResult = 'ok' | ReasonCode;

export type Outcome = 'rotated' | 'skipped' | 'failed';

export interface ObjectResult {
  readonly outcome: Outcome;
  /** Ignored for `rotated` (its label is ''); a skip or failure without one counts as `internal`. */
  readonly reason?: ReasonCode | '' | undefined;
}

export interface ObjectBytes {
  readonly bytesRead?: number;
  readonly bytesWritten?: number;
}

export interface ObjectLabels {
  readonly campaign: string;
  readonly mode: RotationMode;
}

export type ObjectDone = ObjectLabels & ObjectResult & ObjectBytes & { readonly seconds: number };

export interface ObjectInFlight {
  /** Records the outcome and the time since `objectStarted`, and ends the in-flight count; only once. */
  done(result: ObjectResult & ObjectBytes): void;
  /** Ends the in-flight count without an outcome: the object goes back to the queue for another attempt. */
  release(): void;
}

export interface KmsCall {
  /** The KMS API name, e.g. `ReEncrypt`, `GenerateDataKey`, `Decrypt`. */
  readonly operation: string;
  readonly result: CallResult;
  readonly seconds: number;
  /** Defaults to `result === 'kms-throttled'`; set it when a throttled attempt was retried into success. */
  readonly throttled?: boolean;
}

export interface S3Call {
  /** The S3 API name, e.g. `HeadObject`, `UploadPart`, `CompleteMultipartUpload`. */
  readonly operation: string;
  readonly result: CallResult;
  /** Attempts beyond the first, e.g. `$metadata.attempts - 1` from the AWS SDK. */
  readonly retries?: number;
}

/** What a KMS or S3 layer is handed, so it reports calls without knowing about Prometheus. */
export interface CallObserver<Call> {
  onCall(call: Call): void;
}

export const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed'] as const;
export type QueueState = (typeof QUEUE_STATES)[number];

/**
 * Jobs of the one queue all campaigns share, by state. A state left out counts 0, so BullMQ's
 * `getJobCounts()` result fits as it is.
 */
export type QueueCounts = Partial<Record<QueueState, number>>;

export interface CampaignProgress {
  readonly campaign: string;
  readonly planned: number;
  readonly done: number;
  /** Left out, it is estimated from the pace of `done` between scrapes. */
  readonly etaSeconds?: number;
  /** After the closing verification: entries left under the campaign's source keys, by kind. */
  readonly remaining?: Readonly<Record<string, number>>;
}

export interface ThreadPoolStats {
  readonly threads: number;
  /**
   * Busy time summed over all threads since the pool started, including tasks still running (e.g. the sum of
   * `worker.performance.eventLoopUtilization().active` / 1000), so a long task does not show up as a burst.
   */
  readonly busySeconds: number;
  readonly activeStreams: number;
}

/** A key rekey disabled or scheduled for deletion (`rekey retire`), as recorded in Redis. */
export interface RetiringKey {
  /** The key ARN: an identifier, not data, and few keys are ever retiring at once. */
  readonly key: string;
  readonly state: 'disabled' | 'pending-deletion';
  /** KMS refusals rekey met for the key while it was retiring, from any host. */
  readonly refusals: number;
  /** Epoch ms KMS deletes the key at, while it is pending deletion. */
  readonly deletionDate?: number | undefined;
}

type Awaitable<T> = T | Promise<T>;
export type QueueCountsProvider = () => Awaitable<QueueCounts>;
export type CampaignProgressProvider = () => Awaitable<readonly CampaignProgress[]>;
export type ThreadPoolProvider = () => ThreadPoolStats;
export type RetiringKeysProvider = () => Awaitable<readonly RetiringKey[]>;

export interface MetricsOptions {
  /** Monotonic seconds; tests pass their own clock to drive durations, utilisation and ETA. */
  readonly now?: Clock;
  /** How far back the campaign pace for the ETA estimate looks. */
  readonly etaWindowSeconds?: number;
}

export interface RekeyMetrics {
  /** For the metrics server; record through the methods below, never through prom-client. */
  readonly registry: Registry;
  /** Counts the object in flight and starts its clock. */
  objectStarted(labels: ObjectLabels): ObjectInFlight;
  /** Records an object whose duration the caller measured itself. */
  objectDone(done: ObjectDone): void;
  /** Counts bytes as a stream moves them, so throughput does not jump when a large object ends. */
  bytesMoved(moved: ObjectLabels & ObjectBytes): void;
  kmsCall(call: KmsCall): void;
  s3Call(call: S3Call): void;
  readonly kms: CallObserver<KmsCall>;
  readonly s3: CallObserver<S3Call>;
  /** Each `provide…` replaces the previous provider and returns a function that removes it. */
  provideQueueCounts(provider: QueueCountsProvider): () => void;
  provideCampaignProgress(provider: CampaignProgressProvider): () => void;
  provideThreadPool(provider: ThreadPoolProvider): () => void;
  provideRetiringKeys(provider: RetiringKeysProvider): () => void;
}

/** Object durations from a small HEAD-and-skip (5 ms) to a multi-GiB rekey (10 min). */
const OBJECT_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const KMS_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const OBJECT_LABELS = ['campaign', 'mode'] as const;

const AWS_OPERATION = /^[A-Z][A-Za-z0-9]{1,63}$/;

/** Operations come from code, but whatever a caller passes, a label must not carry data such as a key. */
function operationLabel(operation: string): string {
  return AWS_OPERATION.test(operation) ? operation : 'Other';
}

type Provider<T> = () => Awaitable<T>;

/**
 * One provider behind several gauges: one call per scrape, shared by them. A failing provider clears its
 * gauges (a stale number would pass for a current one) and is counted, and the scrape still succeeds.
 */
class Provided<T> {
  private provider: Provider<T> | undefined;
  readonly read: () => Promise<T | undefined>;

  constructor(onError: () => void) {
    this.read = shareInFlight(async () => {
      const provider = this.provider;
      if (!provider) return undefined;
      try {
        return await provider();
      } catch {
        onError();
        return undefined;
      }
    });
  }

  set(provider: Provider<T>): () => void {
    this.provider = provider;
    return () => {
      if (this.provider === provider) this.provider = undefined;
    };
  }
}

interface PoolSample {
  readonly threads: number;
  readonly activeStreams: number;
  readonly utilization: number;
}

interface CampaignSample {
  readonly campaign: string;
  readonly planned: number;
  readonly done: number;
  readonly ratio: number;
  readonly etaSeconds: number | undefined;
  readonly remaining: Readonly<Record<string, number>> | undefined;
}

class PrometheusMetrics implements RekeyMetrics {
  readonly registry = new Registry();
  readonly kms: CallObserver<KmsCall> = { onCall: (call) => this.kmsCall(call) };
  readonly s3: CallObserver<S3Call> = { onCall: (call) => this.s3Call(call) };

  private readonly now: Clock;
  private readonly eta: EtaEstimator;
  private readonly providerErrors: Counter<'provider'> = new Counter({
    name: 'rekey_metrics_provider_errors_total',
    help: 'Provider callbacks that threw while a scrape was collected.',
    labelNames: ['provider'],
    registers: [this.registry],
    // Waits for this scrape's provider calls (shared, not repeated), so it reports their errors now, not next time.
    collect: async () => {
      await Promise.all([this.queue.read(), this.campaigns.read(), this.pool.read(), this.retiring.read()]);
    },
  });
  private readonly queue = new Provided<QueueCounts>(() => this.providerFailed('queue'));
  private readonly campaigns = new Provided<readonly CampaignSample[]>(() => this.providerFailed('campaign'));
  private readonly pool = new Provided<PoolSample>(() => this.providerFailed('thread_pool'));
  private readonly retiring = new Provided<readonly RetiringKey[]>(() => this.providerFailed('retiring_keys'));

  private readonly objects = this.counter(
    'rekey_objects_total',
    'Objects finished, by outcome and reason code (empty reason for rotated).',
    ['campaign', 'mode', 'outcome', 'reason'],
  );
  private readonly readBytes = this.counter('rekey_read_bytes_total', 'Object bytes read from S3.', OBJECT_LABELS);
  private readonly writtenBytes = this.counter(
    'rekey_written_bytes_total',
    'Object bytes written to S3.',
    OBJECT_LABELS,
  );
  private readonly objectSeconds = new Histogram({
    name: 'rekey_object_duration_seconds',
    help: 'Time to rotate, skip or fail one object.',
    labelNames: ['campaign', 'mode', 'outcome'],
    buckets: OBJECT_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  private readonly inFlight = new Gauge({
    name: 'rekey_objects_in_flight',
    help: 'Objects this worker is working on.',
    labelNames: ['campaign'],
    registers: [this.registry],
  });
  private readonly kmsRequests = this.counter(
    'rekey_kms_requests_total',
    'KMS requests, by operation and result (ok or a reason code).',
    ['operation', 'result'],
  );
  private readonly kmsSeconds = new Histogram({
    name: 'rekey_kms_request_duration_seconds',
    help: 'KMS request latency.',
    labelNames: ['operation'],
    buckets: KMS_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  private readonly kmsThrottles = this.counter(
    'rekey_kms_throttles_total',
    'KMS requests refused for the request rate.',
    ['operation'],
  );
  private readonly s3Requests = this.counter(
    'rekey_s3_requests_total',
    'S3 requests, by operation and result (ok or a reason code).',
    ['operation', 'result'],
  );
  private readonly s3Retries = this.counter('rekey_s3_retries_total', 'S3 attempts beyond the first.', ['operation']);

  constructor(options: MetricsOptions) {
    this.now = options.now ?? monotonicSeconds;
    this.eta = new EtaEstimator(this.now, options.etaWindowSeconds ?? 300);
    collectDefaultMetrics({ register: this.registry });
    this.registerQueueGauge();
    this.registerCampaignGauges();
    this.registerRemainderGauge();
    this.registerPoolGauges();
    this.registerRetiringKeyMetrics();
  }

  objectStarted(labels: ObjectLabels): ObjectInFlight {
    const started = this.now();
    this.zeroObjectSeries(labels);
    this.inFlight.inc({ campaign: labels.campaign });
    let open = true;
    const close = (): boolean => {
      if (!open) return false;
      open = false;
      this.inFlight.dec({ campaign: labels.campaign });
      return true;
    };
    return {
      done: (result) => {
        if (close()) this.objectDone({ ...labels, ...result, seconds: this.now() - started });
      },
      release: () => void close(),
    };
  }

  objectDone(done: ObjectDone): void {
    const reason = done.outcome === 'rotated' ? '' : done.reason || 'internal';
    const { campaign, mode, outcome, bytesRead, bytesWritten } = done;
    this.objects.inc({ campaign, mode, outcome, reason });
    this.objectSeconds.observe({ campaign, mode, outcome }, done.seconds);
    this.bytesMoved({ campaign, mode, bytesRead, bytesWritten });
  }

  bytesMoved(moved: ObjectLabels & ObjectBytes): void {
    const labels = { campaign: moved.campaign, mode: moved.mode };
    if (moved.bytesRead) this.readBytes.inc(labels, moved.bytesRead);
    if (moved.bytesWritten) this.writtenBytes.inc(labels, moved.bytesWritten);
  }

  kmsCall(call: KmsCall): void {
    const operation = operationLabel(call.operation);
    this.kmsRequests.inc({ operation, result: call.result });
    this.kmsSeconds.observe({ operation }, call.seconds);
    // Counting 0 too keeps a series per operation from the first call, so rate() sees the first throttle.
    this.kmsThrottles.inc({ operation }, (call.throttled ?? call.result === 'kms-throttled') ? 1 : 0);
  }

  s3Call(call: S3Call): void {
    const operation = operationLabel(call.operation);
    this.s3Requests.inc({ operation, result: call.result });
    this.s3Retries.inc({ operation }, call.retries ?? 0);
  }

  provideQueueCounts(provider: QueueCountsProvider): () => void {
    return this.queue.set(provider);
  }

  provideCampaignProgress(provider: CampaignProgressProvider): () => void {
    return this.campaigns.set(async () => {
      const rows = await provider();
      this.eta.retain(new Set(rows.map((row) => row.campaign)));
      return rows.map((row) => ({
        campaign: row.campaign,
        planned: row.planned,
        done: row.done,
        ratio: row.planned > 0 ? Math.min(row.done / row.planned, 1) : 0,
        etaSeconds: row.etaSeconds ?? this.eta.estimate(row.campaign, row.planned, row.done),
        remaining: row.remaining,
      }));
    });
  }

  provideRetiringKeys(provider: RetiringKeysProvider): () => void {
    return this.retiring.set(provider);
  }

  provideThreadPool(provider: ThreadPoolProvider): () => void {
    const meter = new UtilizationMeter(this.now);
    // The first scrape then measures from now, not from a missing baseline.
    meter.sample(provider());
    return this.pool.set(() => {
      const stats = provider();
      return { threads: stats.threads, activeStreams: stats.activeStreams, utilization: meter.sample(stats) };
    });
  }

  /**
   * A series that first appears at 1 hides that first increment from rate() and increase(); starting the
   * campaign's counters at 0 when its first object starts lets the dashboard count every object and byte.
   */
  private zeroObjectSeries({ campaign, mode }: ObjectLabels): void {
    this.objects.inc({ campaign, mode, outcome: 'rotated', reason: '' }, 0);
    this.readBytes.inc({ campaign, mode }, 0);
    this.writtenBytes.inc({ campaign, mode }, 0);
  }

  private providerFailed(provider: 'queue' | 'campaign' | 'thread_pool' | 'retiring_keys'): void {
    this.providerErrors.inc({ provider });
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private registerQueueGauge(): void {
    const queue = this.queue;
    new Gauge({
      name: 'rekey_queue_jobs',
      help: 'Jobs in the queue all campaigns share, by BullMQ state (the same for every worker: aggregate with max).',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const counts = await queue.read();
        this.reset();
        if (counts === undefined) return;
        for (const state of QUEUE_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
  }

  private registerCampaignGauges(): void {
    const fields = {
      rekey_campaign_objects_planned: ['Objects the campaign plans to visit.', (s: CampaignSample) => s.planned],
      rekey_campaign_objects_done: [
        'Objects the campaign has finished, whatever the outcome.',
        (s: CampaignSample) => s.done,
      ],
      rekey_campaign_progress_ratio: ['Done over planned, 0 to 1.', (s: CampaignSample) => s.ratio],
      rekey_campaign_eta_seconds: [
        'Estimated time until the campaign is done; absent while there is no pace to go by.',
        (s: CampaignSample) => s.etaSeconds,
      ],
    } as const;
    const campaigns = this.campaigns;
    for (const [name, [help, value]] of Object.entries(fields)) {
      new Gauge({
        name,
        help: `${help} (The same for every worker: aggregate with max.)`,
        labelNames: ['campaign'],
        registers: [this.registry],
        async collect() {
          const samples = await campaigns.read();
          this.reset();
          for (const sample of samples ?? []) {
            const v = value(sample);
            if (v !== undefined) this.set({ campaign: sample.campaign }, v);
          }
        },
      });
    }
  }

  private registerRemainderGauge(): void {
    const campaigns = this.campaigns;
    new Gauge({
      name: 'rekey_campaign_remaining_entries',
      help: 'Entries the closing verification found still under the campaign\'s source keys (or unreadable), by kind; absent before it ran. (The same for every worker: aggregate with max.)',
      labelNames: ['campaign', 'reason'],
      registers: [this.registry],
      async collect() {
        const samples = await campaigns.read();
        this.reset();
        for (const sample of samples ?? []) {
          for (const [reason, count] of Object.entries(sample.remaining ?? {})) this.set({ campaign: sample.campaign, reason }, count);
        }
      },
    });
  }

  /**
   * Retiring keys as Redis knows them, the same for every worker (aggregate with max): the refusal
   * count is Redis's, so refusals met by the CLI count too; it only grows while the key is retiring.
   */
  private registerRetiringKeyMetrics(): void {
    const retiring = this.retiring;
    new Counter({
      name: 'rekey_retiring_key_refusals_total',
      help: 'KMS refusals (disabled, invalid state) rekey met for a key it disabled or scheduled for deletion. (The same for every worker: aggregate with max.)',
      labelNames: ['key'],
      registers: [this.registry],
      async collect() {
        const keys = await retiring.read();
        this.reset();
        for (const k of keys ?? []) this.inc({ key: k.key }, k.refusals);
      },
    });
    const gauges: Record<string, [string, readonly string[], (k: RetiringKey) => [Record<string, string>, number] | undefined]> = {
      rekey_retiring_key_state: ['1 for each key rekey disabled or scheduled for deletion, by state.', ['key', 'state'], (k) => [{ key: k.key, state: k.state }, 1]],
      rekey_retiring_key_deletion_timestamp_seconds: [
        'When KMS deletes a key pending deletion, in Unix seconds.',
        ['key'],
        (k) => (k.deletionDate === undefined ? undefined : [{ key: k.key }, k.deletionDate / 1000]),
      ],
    };
    for (const [name, [help, labelNames, sample]] of Object.entries(gauges)) {
      new Gauge({
        name,
        help: `${help} (The same for every worker: aggregate with max.)`,
        labelNames,
        registers: [this.registry],
        async collect() {
          const keys = await retiring.read();
          this.reset();
          for (const k of keys ?? []) {
            const point = sample(k);
            if (point) this.set(...point);
          }
        },
      });
    }
  }

  private registerPoolGauges(): void {
    const fields = {
      rekey_thread_pool_threads: ['Crypto worker threads in this process.', (s: PoolSample) => s.threads],
      rekey_thread_pool_utilization_ratio: [
        'Busy time over threads × wall time since the previous scrape, 0 to 1.',
        (s: PoolSample) => s.utilization,
      ],
      rekey_thread_pool_active_streams: [
        'Object streams the crypto pool is encrypting or decrypting.',
        (s: PoolSample) => s.activeStreams,
      ],
    } as const;
    const pool = this.pool;
    for (const [name, [help, value]] of Object.entries(fields)) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        async collect() {
          const sample = await pool.read();
          if (sample) this.set(value(sample));
          else this.reset();
        },
      });
    }
  }
}

/** A registry of its own per call, so tests and several workers in one process never share series. */
export function createMetrics(options: MetricsOptions = {}): RekeyMetrics {
  return new PrometheusMetrics(options);
}
