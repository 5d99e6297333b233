/**
 * Record-path benchmark: what a campaign costs Redis, and the paper model of a billion objects.
 * Run: `node --import tsx bench/record.ts`. Needs the stack's Redis only; no S3, no KMS.
 *
 * 1. Settled objects: BENCH_RECORD_OBJECTS objects (50,000) in batches of 100 (the default
 *    `--batch-size`) through the real `processBatch` and `CampaignStore`, BENCH_RECORD_CONCURRENCY
 *    batches at once (8: two workers of `--concurrency 4`). The rotate layer is replaced by one that
 *    does no S3 or KMS work but calls the processor as the real one does: a write intent before each
 *    write, each final outcome as it settles (97 % rotated, 2 % skipped, 1 % failed). Rows go to the
 *    real folder report store in a temporary folder. Measured: Redis bytes left per settled object
 *    (`INFO memory` and `MEMORY USAGE` of the campaign's keys), Redis commands and Redis CPU per object.
 * 2. Baseline, same Redis, same rows: the design this replaced, reimplemented here as it was (its
 *    `rekeyRecord` script): per object, the outcome JSON XADDed to the campaign's log stream and its
 *    entry id HSET in its outcomes hash, kept for the campaign's lifetime. BENCH_BASELINE_OBJECTS (20,000).
 * 3. Queued keys: the real planner plans an inventory-style CSV of BENCH_MAX_UNSETTLED + 10,000 keys
 *    (the default `--max-unsettled`, 1,000,000) into the real BullMQ queue until backpressure holds it;
 *    Redis bytes per queued key at the bound. Then 5,000 objects are counted settled: planning resumes
 *    by one page and holds again.
 * 4. A 10,000,000-object campaign (BENCH_CAMPAIGN_OBJECTS): its batches counted by the real
 *    `recordBatch` (one marker per batch), with the bound's queue of step 3 still in Redis; then
 *    BENCH_IN_FLIGHT_BATCHES batches (400: 100 workers of `--concurrency 4`) left in flight through the
 *    real per-object calls. Redis memory then is the campaign's peak: a full queue, every marker,
 *    the in-flight state. Then BullMQ's own commands to take and complete a job, on 1,000 of the jobs.
 * 5. The paper model of a 1,000,000,000-object campaign, from these figures and S3 list prices
 *    (BENCH_S3_PUT_PER_1000, BENCH_S3_GET_PER_1000, BENCH_S3_GB_MONTH).
 *
 * Bytes per settled object are `MEMORY USAGE` of the campaign's keys (every element sampled): exact, where
 * `used_memory` moves by tens of KB with client buffers; both are printed.
 * Last line: `redis_bytes_per_settled_object_vs_per_object_log=<ratio>` (step 1 over step 2).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { DEFAULT_MAX_UNSETTLED, planCampaign, type PlanResult } from '../src/campaign/planner.js';
import { processBatch, type BatchRotator, type ProcessorDeps } from '../src/campaign/processor.js';
import { UploadJournals } from '../src/campaign/upload-journals.js';
import { batchesOf, connectionOf, makeQueue, makeVerifyQueue, QUEUE_NAME, queuePrefix, type BatchJob } from '../src/campaign/queue.js';
import { openReportStore } from '../src/campaign/report-store.js';
import type { CampaignSpec } from '../src/campaign/spec.js';
import { CampaignStore, objectId } from '../src/campaign/store.js';
import { makeRedis, makeS3Client } from '../src/config/clients.js';
import { loadConfig, type Config } from '../src/config/config.js';
import type { WriteIntent } from '../src/rotate/intent.js';
import { notRotated, rotated, type ObjectOutcome, type ObjectRef } from '../src/rotate/outcome.js';
import { uniqueName } from '../test/helpers/stack.js';
import { dropPrefix, envInt, envNumber, inventoryKey, machineLine, seconds, writeInventoryCsv } from './support.js';

const BATCH_SIZE = 100;
const OBJECTS = envInt('BENCH_RECORD_OBJECTS', 50_000);
const CONCURRENCY = envInt('BENCH_RECORD_CONCURRENCY', 8);
const BASELINE_OBJECTS = envInt('BENCH_BASELINE_OBJECTS', 20_000);
const QUEUE_BOUND = envInt('BENCH_MAX_UNSETTLED', DEFAULT_MAX_UNSETTLED);
const CAMPAIGN_OBJECTS = envInt('BENCH_CAMPAIGN_OBJECTS', 10_000_000);
const IN_FLIGHT_BATCHES = envInt('BENCH_IN_FLIGHT_BATCHES', 400);
const CONSUMED_JOBS = 1000;
// S3 Standard, us-east-1 list prices (aws.amazon.com/s3/pricing; unchanged 2018–2025, not re-read for this run).
const PUT_PER_1000 = envNumber('BENCH_S3_PUT_PER_1000', 0.005);
const GET_PER_1000 = envNumber('BENCH_S3_GET_PER_1000', 0.0004);
const GB_MONTH = envNumber('BENCH_S3_GB_MONTH', 0.023);
// AWS' documented request rates per partitioned prefix.
const PUTS_PER_S_PER_PREFIX = 3500;
const GETS_PER_S_PER_PREFIX = 5500;
const PAPER_OBJECTS = 1e9;

const SOURCE_KEY = 'arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const TARGET_KEY = 'arn:aws:kms:us-east-1:111122223333:key/9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d';
const BUCKET = 'bench-source-bucket';

const hex = (seed: string, length: number) => createHash('sha256').update(seed).digest('hex').slice(0, length);

/** Object `i` as a campaign of a versioned bucket sees it: an inventory key, a 32-character version id. */
function refOf(i: number): ObjectRef {
  return { bucket: BUCKET, key: decodeURIComponent(inventoryKey(i)), versionId: hex(`v${i}`, 32) };
}

/** Facts of a rekeyed ~1 MiB object: formats, both keys, ETags and versions, bytes, duration. */
function factsOf(ref: ObjectRef) {
  const size = 1_048_576 + (ref.key.length % 7) * 4096;
  return {
    format: 'v2',
    newFormat: 'v2',
    oldKeyId: SOURCE_KEY,
    newKeyId: TARGET_KEY,
    oldEtag: `"${hex(`e${ref.key}`, 32)}"`,
    oldVersionId: ref.versionId,
    bytesRead: size,
    bytesWritten: size,
    durationMs: 180,
  };
}

/** The outcome the rotate layer would settle for object `i`: 97 % rotated, 2 % already rotated, 1 % denied. */
function outcomeOf(ref: ObjectRef, i: number): ObjectOutcome {
  if (i % 100 === 7) return notRotated(ref, 'rekey', 'already-rotated', `already under ${TARGET_KEY}`, { format: 'v2', oldKeyId: TARGET_KEY });
  if (i % 100 === 42) return notRotated(ref, 'rekey', 'kms-denied', `AccessDeniedException: not authorized to perform kms:Decrypt on ${SOURCE_KEY}`, { format: 'v2', oldKeyId: SOURCE_KEY });
  return rotated(ref, 'rekey', { ...factsOf(ref), newEtag: `"${hex(`n${ref.key}`, 32)}"`, newVersionId: hex(`w${ref.key}`, 32) });
}

function intentOf(ref: ObjectRef): WriteIntent {
  return { ref, mode: 'rekey', facts: factsOf(ref), location: 'object', replacedVersionId: ref.versionId, wrappedKeyDigest: createHash('sha256').update(ref.key).digest('base64'), at: Date.now() };
}

const indexOf = (ref: ObjectRef) => Number(/event (\d+)\.json$/.exec(ref.key)![1]);

/** Stands in for the rotate layer, without S3 or KMS: an intent before each write, each outcome as it settles. */
const benchRotator: BatchRotator = {
  async rotate(refs, _journal, onOutcome, intents) {
    const outcomes: ObjectOutcome[] = [];
    for (const ref of refs) {
      const outcome = outcomeOf(ref, indexOf(ref));
      if (outcome.outcome === 'rotated') await intents?.intend(intentOf(ref));
      await onOutcome?.(outcome);
      outcomes.push(outcome);
    }
    return outcomes;
  },
  recover: async () => undefined,
};

/** A batch's id in the planner's form (queue.ts `enqueue`): the campaign id and a SHA-1, 49 characters. */
const batchIdOf = (campaignId: string, seed: string) => `${campaignId}-${createHash('sha1').update(seed).digest('hex')}`;

function benchSpec(reportTo: string, overrides: Partial<CampaignSpec> = {}): CampaignSpec {
  return {
    name: 'bench record',
    mode: 'rekey',
    targetKey: TARGET_KEY,
    targetKeyArn: TARGET_KEY,
    sourceKeyArns: [],
    targetFormat: 'same',
    priority: 'incident',
    sources: [],
    kmsRequestsPerSecond: 1000,
    batchSize: BATCH_SIZE,
    reportTo,
    ...overrides,
  };
}

/** Runs `work` on every item, `concurrency` at a time. */
async function eachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
}

interface RedisSample {
  readonly usedMemory: number;
  readonly cpuSeconds: number;
  /** Every command Redis ran, those a script ran included (Redis 7 counts both in `total_commands_processed`). */
  readonly commands: number;
  /** Script calls (EVALSHA, EVAL): the round trips that ran many commands at once. */
  readonly scripts: number;
}

async function sample(redis: Redis): Promise<RedisSample> {
  const info = (await redis.call('INFO', 'memory', 'cpu', 'stats', 'commandstats')) as string;
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)![1]);
  const scripts = [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  return { usedMemory: field('used_memory'), cpuSeconds: field('used_cpu_sys') + field('used_cpu_user'), commands: field('total_commands_processed'), scripts };
}

interface RedisCost {
  readonly bytes: number;
  readonly cpuSeconds: number;
  readonly commands: number;
  readonly scripts: number;
}

/** What Redis spent between two samples; the INFO call of the second sample is not counted. */
function costBetween(before: RedisSample, after: RedisSample): RedisCost {
  return {
    bytes: after.usedMemory - before.usedMemory,
    cpuSeconds: after.cpuSeconds - before.cpuSeconds,
    commands: after.commands - before.commands - 1,
    scripts: after.scripts - before.scripts,
  };
}

/** `MEMORY USAGE` (every element sampled) of every key of a campaign. */
async function campaignKeyBytes(redis: Redis, prefix: string, id: string): Promise<number> {
  let total = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:campaign:{${id}}*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) total += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  } while (cursor !== '0');
  return total;
}

async function folderBytes(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files += 1;
    bytes += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

const fixed = (n: number, digits = 1) => n.toFixed(digits);
const mb = (bytes: number) => fixed(bytes / 1e6, 1);
const say = (line: string) => process.stdout.write(`${line}\n`);

interface SettledFigures {
  readonly objects: number;
  readonly bytesPerObject: number;
  readonly keyBytesPerObject: number;
  readonly cpuUsPerObject: number;
  readonly scriptsPerObject: number;
  readonly commandsPerObject: number;
  readonly objectsPerSecond: number;
  readonly reportBytesPerRow: number;
}

function perObject(cost: RedisCost, objects: number) {
  return {
    bytesPerObject: cost.bytes / objects,
    cpuUsPerObject: (cost.cpuSeconds / objects) * 1e6,
    scriptsPerObject: cost.scripts / objects,
    commandsPerObject: cost.commands / objects,
  };
}

/** Step 1: objects through the real processor and store, rows to the real folder report store. */
async function measureSettled(config: Config, redis: Redis): Promise<SettledFigures> {
  const prefix = uniqueName('bench-record');
  const store = new CampaignStore(redis, prefix);
  const reportDir = await mkdtemp(join(tmpdir(), 'rekey-bench-report-'));
  const s3 = makeS3Client(config);
  const queue = makeQueue({ ...config, redisPrefix: prefix }, redis);
  try {
    const id = await store.create(benchSpec(reportDir, { skipVerification: true }));
    await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: OBJECTS });
    const jobs = batchesOf(id, Array.from({ length: OBJECTS }, (_, i) => refOf(i)), BATCH_SIZE);
    const deps: ProcessorDeps = { s3, store, journals: new UploadJournals(redis, prefix), queue, rotatorFor: () => benchRotator, reportsFor: (campaignId, spec) => openReportStore(s3, spec.reportTo, campaignId) };
    const run = (job: BatchJob, i: number) => processBatch(deps, job, batchIdOf(id, `0|start|${i}`));
    // One batch first, so the scripts are loaded and the connection warm before anything is counted.
    await run(jobs[0]!, 0);
    const measured = jobs.slice(1);
    const objects = measured.reduce((n, job) => n + job.k.length, 0);
    const before = await sample(redis);
    const keysBefore = await campaignKeyBytes(redis, prefix, id);
    const started = process.hrtime.bigint();
    await eachConcurrently(measured, CONCURRENCY, (job, i) => run(job, i + 1));
    const wall = seconds(started);
    const cost = costBetween(before, await sample(redis));
    const keysAfter = await campaignKeyBytes(redis, prefix, id);
    const status = await store.status(id);
    const report = await folderBytes(reportDir);
    /* Precondition: every object was counted once and every batch has its file: the figures are of the whole path. */
    if (status.done !== OBJECTS || report.files !== jobs.length) throw new Error(`done ${status.done} of ${OBJECTS}, ${report.files} batch files of ${jobs.length}`);
    return { objects, ...perObject(cost, objects), keyBytesPerObject: (keysAfter - keysBefore) / objects, objectsPerSecond: objects / wall, reportBytesPerRow: report.bytes / OBJECTS };
  } finally {
    s3.destroy();
    await queue.close();
    await rm(reportDir, { recursive: true, force: true });
    await dropPrefix({ ...config, redisPrefix: prefix });
  }
}

/** The replaced design's per-object record, as its `rekeyRecord` script was (without its finish check). */
const OLD_RECORD = `
  if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
  local entry = redis.call('XADD', KEYS[4], '*', 'o', ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[1], entry)
  redis.call('HINCRBY', KEYS[1], 'done', 1)
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  redis.call('HINCRBY', KEYS[1], 'bytesRead', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'bytesWritten', ARGV[5])
  if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
  return 1`;

interface BaselineRedis extends Redis {
  benchOldRecord(...args: (string | number)[]): Promise<number>;
}

/** Step 2: the same rows recorded one by one into a log stream and an outcomes hash. */
async function measureBaseline(config: Config, redis: Redis): Promise<SettledFigures> {
  const prefix = uniqueName('bench-record-old');
  const base = `${prefix}:campaign:{old}`;
  const old = redis as BaselineRedis;
  if (!old.benchOldRecord) redis.defineCommand('benchOldRecord', { numberOfKeys: 4, lua: OLD_RECORD });
  const record = (i: number) => {
    const outcome = outcomeOf(refOf(i), i);
    const label = outcome.reason ? `${outcome.outcome}:${outcome.reason}` : '';
    return old.benchOldRecord(base, `${base}:reasons`, `${base}:outcomes`, `${base}:log`, objectId(outcome.ref), outcome.outcome, label, outcome.bytesRead, outcome.bytesWritten, JSON.stringify(outcome));
  };
  try {
    await record(0);
    const indexes = Array.from({ length: BASELINE_OBJECTS }, (_, i) => i + 1);
    const before = await sample(redis);
    const started = process.hrtime.bigint();
    // As many records in flight as step 1 has objects settling at once.
    await eachConcurrently(indexes, CONCURRENCY, record);
    const wall = seconds(started);
    const cost = costBetween(before, await sample(redis));
    return { objects: BASELINE_OBJECTS, ...perObject(cost, BASELINE_OBJECTS), keyBytesPerObject: (await campaignKeyBytes(redis, prefix, 'old')) / (BASELINE_OBJECTS + 1), objectsPerSecond: BASELINE_OBJECTS / wall, reportBytesPerRow: 0 };
  } finally {
    await dropPrefix({ ...config, redisPrefix: prefix });
  }
}

interface QueueFigures {
  readonly planned: number;
  readonly bytes: number;
  readonly bytesPerKey: number;
  readonly scriptsPerKey: number;
  readonly commandsPerKey: number;
  readonly keysPerSecond: number;
  readonly resumedTo: number;
}

/** Step 3: the real planner into the real queue until backpressure holds it; then one drain and resume. */
async function measureQueueBound(config: Config, redis: Redis, store: CampaignStore, s3: ReturnType<typeof makeS3Client>): Promise<QueueFigures> {
  const manifest = await writeInventoryCsv(QUEUE_BOUND + 10_000);
  const queue = makeQueue(config, redis);
  const id = await store.create(benchSpec(tmpdir(), { sources: [{ kind: 'manifest', uri: manifest }], maxUnsettled: QUEUE_BOUND, skipVerification: true }));
  let held: () => void = () => undefined;
  const holds = () => new Promise<void>((resolve) => (held = resolve));
  try {
    let hold = holds();
    const before = await sample(redis);
    const started = process.hrtime.bigint();
    const planner: Promise<PlanResult> = planCampaign({ s3, store, queue, verifyQueue: makeVerifyQueue(config, redis) }, id, { backpressurePollMs: 100, onBackpressure: () => held() });
    await Promise.race([hold, planner]);
    const wall = seconds(started);
    const cost = costBetween(before, await sample(redis));
    const status = await store.status(id);
    /* Precondition: the planner is held by backpressure at the bound, not finished. */
    if (status.planning !== 'backpressure' || status.planned !== QUEUE_BOUND) throw new Error(`planner not held at the bound: ${status.planning}, planned ${status.planned}`);
    // Workers settle 5,000 objects: planning resumes for one page and is held again.
    hold = holds();
    await store.recordBatch(id, batchIdOf(id, 'drain'), Array.from({ length: 5000 }, (_, i) => outcomeOf(refOf(i), i)));
    await hold;
    const resumedTo = (await store.status(id)).planned;
    await store.transition(id, ['planning', 'running'], 'cancelled');
    /* Precondition: a cancelled campaign's planner stops even while held. */
    if ((await planner) !== 'cancelled') throw new Error('the planner did not stop on cancel');
    return {
      planned: status.planned,
      bytes: cost.bytes,
      bytesPerKey: cost.bytes / status.planned,
      scriptsPerKey: cost.scripts / status.planned,
      commandsPerKey: cost.commands / status.planned,
      keysPerSecond: status.planned / wall,
      resumedTo,
    };
  } finally {
    await queue.close();
  }
}

/** One batch's outcomes, as `recordBatch` gets them: the counters it adds up are per-batch sums. */
const TEMPLATE_ROWS = Array.from({ length: BATCH_SIZE }, (_, i) => outcomeOf(refOf(i), i));

interface MarkerFigures {
  readonly bytesPerObject: number;
  readonly keyBytes: number;
  readonly perCpuSecond: number;
  readonly perSecond: number;
  readonly commandsPerBatch: number;
}

/** Step 4: every batch of a campaign counted by `recordBatch`, each leaving its marker. */
async function recordMarkers(redis: Redis, store: CampaignStore, prefix: string, id: string): Promise<MarkerFigures> {
  const batches = Array.from({ length: Math.ceil(CAMPAIGN_OBJECTS / BATCH_SIZE) }, (_, i) => batchIdOf(id, `0|${i}`));
  await store.recordBatch(id, batches[0]!, TEMPLATE_ROWS);
  const before = await sample(redis);
  const started = process.hrtime.bigint();
  await eachConcurrently(batches.slice(1), 64, (batchId) => store.recordBatch(id, batchId, TEMPLATE_ROWS));
  const wall = seconds(started);
  const cost = costBetween(before, await sample(redis));
  const objects = (batches.length - 1) * BATCH_SIZE;
  return {
    bytesPerObject: cost.bytes / objects,
    keyBytes: await campaignKeyBytes(redis, prefix, id),
    perCpuSecond: objects / cost.cpuSeconds,
    perSecond: objects / wall,
    commandsPerBatch: cost.commands / (batches.length - 1),
  };
}

/** Batches left in flight as workers leave them mid-way: every object's intent and outcome settled, not recorded. */
async function openInFlight(store: CampaignStore, id: string): Promise<void> {
  await eachConcurrently(Array.from({ length: IN_FLIGHT_BATCHES }, (_, b) => b), 64, async (b) => {
    const flight = store.inFlight(id, batchIdOf(id, `flight|${b}`));
    for (const outcome of TEMPLATE_ROWS) {
      if (outcome.outcome === 'rotated') await flight.intend(intentOf(outcome.ref));
      await flight.settle(outcome);
    }
  });
}

interface BullmqFigures {
  readonly jobs: number;
  readonly scriptsPerJob: number;
  readonly commandsPerJob: number;
  readonly cpuUsPerJob: number;
}

/** BullMQ's own share: a worker takes and completes up to 1,000 queued jobs, doing nothing with them. */
async function consumeJobs(config: Config, redis: Redis, queued: number): Promise<BullmqFigures> {
  const wanted = Math.min(CONSUMED_JOBS, queued);
  if (wanted === 0) return { jobs: 0, scriptsPerJob: 0, commandsPerJob: 0, cpuUsPerJob: 0 };
  const before = await sample(redis);
  let consumed = 0;
  let enough: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (enough = resolve));
  const worker = new Worker<BatchJob>(QUEUE_NAME, async () => undefined, { connection: connectionOf(config, redis), prefix: queuePrefix(config), concurrency: 4 });
  worker.on('completed', () => ++consumed >= wanted && enough());
  await done;
  await worker.close();
  const cost = costBetween(before, await sample(redis));
  return { jobs: consumed, scriptsPerJob: cost.scripts / consumed, commandsPerJob: cost.commands / consumed, cpuUsPerJob: (cost.cpuSeconds / consumed) * 1e6 };
}

const config = { ...loadConfig(), logLevel: 'silent' as const };
// One Redis, not a cluster: the figures read its INFO and MEMORY USAGE.
const redis = makeRedis(config) as Redis;
say(machineLine());
say(`redis: ${/redis_version:(\S+)/.exec(await redis.info('server'))![1]}, batch size ${BATCH_SIZE}, ${CONCURRENCY} batches at once`);

const settled = await measureSettled(config, redis);
say(
  `settled objects=${settled.objects} redis_bytes_per_object=${fixed(settled.bytesPerObject, 2)} key_bytes_per_object=${fixed(settled.keyBytesPerObject, 2)} ` +
    `redis_cpu_us_per_object=${fixed(settled.cpuUsPerObject, 1)} objects_per_redis_cpu_s=${Math.round(1e6 / settled.cpuUsPerObject)} ` +
    `script_calls_per_object=${fixed(settled.scriptsPerObject, 2)} commands_per_object=${fixed(settled.commandsPerObject, 2)} ` +
    `objects_per_s=${Math.round(settled.objectsPerSecond)} report_bytes_per_row=${Math.round(settled.reportBytesPerRow)}`,
);
const baseline = await measureBaseline(config, redis);
say(
  `baseline_per_object_log objects=${baseline.objects} redis_bytes_per_object=${fixed(baseline.bytesPerObject, 1)} key_bytes_per_object=${fixed(baseline.keyBytesPerObject, 1)} ` +
    `redis_cpu_us_per_object=${fixed(baseline.cpuUsPerObject, 1)} script_calls_per_object=${fixed(baseline.scriptsPerObject, 2)} commands_per_object=${fixed(baseline.commandsPerObject, 2)} objects_per_s=${Math.round(baseline.objectsPerSecond)}`,
);

const campaignConfig = { ...config, redisPrefix: uniqueName('bench-campaign') };
const store = new CampaignStore(redis, campaignConfig.redisPrefix);
const s3 = makeS3Client(config);
try {
  const empty = await sample(redis);
  const queued = await measureQueueBound(campaignConfig, redis, store, s3);
  say(
    `queue bound=${QUEUE_BOUND} planned=${queued.planned} redis_mb=${mb(queued.bytes)} redis_bytes_per_queued_key=${fixed(queued.bytesPerKey, 1)} ` +
      `script_calls_per_key=${fixed(queued.scriptsPerKey, 3)} commands_per_key=${fixed(queued.commandsPerKey, 3)} keys_per_s=${Math.round(queued.keysPerSecond)} ` +
      `resumed_after_5000_settled_to=${queued.resumedTo}`,
  );
  const campaignId = await store.create(benchSpec(tmpdir(), { skipVerification: true }));
  const markers = await recordMarkers(redis, store, campaignConfig.redisPrefix, campaignId);
  say(
    `campaign objects=${CAMPAIGN_OBJECTS} marker_bytes_per_object=${fixed(markers.bytesPerObject, 2)} campaign_keys_mb=${mb(markers.keyBytes)} ` +
      `recorded_per_redis_cpu_s=${Math.round(markers.perCpuSecond)} recorded_per_s=${Math.round(markers.perSecond)} commands_per_batch=${fixed(markers.commandsPerBatch, 1)}`,
  );
  const flightBefore = await sample(redis);
  await openInFlight(store, campaignId);
  const peak = await sample(redis);
  const inFlightPerBatch = costBetween(flightBefore, peak).bytes / IN_FLIGHT_BATCHES;
  say(`in_flight batches=${IN_FLIGHT_BATCHES} redis_bytes_per_batch=${Math.round(inFlightPerBatch)} redis_mb=${mb(inFlightPerBatch * IN_FLIGHT_BATCHES)}`);
  say(`peak objects=${CAMPAIGN_OBJECTS} redis_mib=${fixed((peak.usedMemory - empty.usedMemory) / 2 ** 20)} (queue at its bound + every marker of the campaign + ${IN_FLIGHT_BATCHES} batches in flight, measured together)`);
  const bullmq = await consumeJobs(campaignConfig, redis, Math.floor(queued.resumedTo / BATCH_SIZE));
  say(`bullmq_per_job jobs=${bullmq.jobs} script_calls=${fixed(bullmq.scriptsPerJob, 1)} commands=${fixed(bullmq.commandsPerJob, 1)} redis_cpu_us=${fixed(bullmq.cpuUsPerJob, 0)}`);

  // The paper model: a billion objects from the figures above.
  const batches = PAPER_OBJECTS / BATCH_SIZE;
  const redisBytes = PAPER_OBJECTS * markers.bytesPerObject + queued.bytes + IN_FLIGHT_BATCHES * inFlightPerBatch;
  const scriptsPerObject1e9 = settled.scriptsPerObject + queued.scriptsPerKey + bullmq.scriptsPerJob / BATCH_SIZE;
  const commandsPerObject1e9 = settled.commandsPerObject + queued.commandsPerKey + bullmq.commandsPerJob / BATCH_SIZE;
  const cpuUsPerObject = settled.cpuUsPerObject + bullmq.cpuUsPerJob / BATCH_SIZE;
  const listPages = batches / 1000;
  const reportGb = (PAPER_OBJECTS * settled.reportBytesPerRow) / 1e9;
  say(
    `paper_1e9 redis_gib=${fixed(redisBytes / 2 ** 30, 2)} (markers ${fixed((PAPER_OBJECTS * markers.bytesPerObject) / 2 ** 30, 2)}) ` +
      `script_calls_per_object=${fixed(scriptsPerObject1e9, 2)} commands_per_object=${fixed(commandsPerObject1e9, 2)} ` +
      `redis_core_hours=${fixed((PAPER_OBJECTS * cpuUsPerObject) / 1e6 / 3600, 1)} max_objects_per_s_one_redis_core=${Math.round(1e6 / cpuUsPerObject)}`,
  );
  say(
    `paper_1e9 report_puts=${batches} put_usd=${fixed((batches / 1000) * PUT_PER_1000, 2)} put_hours_one_prefix=${fixed(batches / PUTS_PER_S_PER_PREFIX / 3600, 2)} ` +
      `read_lists=${listPages} read_gets=${batches} read_usd=${fixed((listPages / 1000) * PUT_PER_1000 + (batches / 1000) * GET_PER_1000, 2)} read_hours_one_prefix=${fixed(batches / GETS_PER_S_PER_PREFIX / 3600, 2)} ` +
      `report_gb=${fixed(reportGb, 0)} storage_usd_per_month=${fixed(reportGb * GB_MONTH, 2)} (prices per 1000: PUT/LIST $${PUT_PER_1000}, GET $${GET_PER_1000}; $${GB_MONTH}/GB-month)`,
  );
} finally {
  s3.destroy();
  await dropPrefix(campaignConfig);
  await redis.quit();
}
say(`redis_bytes_per_settled_object=${fixed(settled.keyBytesPerObject, 2)}`);
say(`redis_bytes_per_settled_object_vs_per_object_log=${fixed(settled.keyBytesPerObject / baseline.keyBytesPerObject, 4)}`);
