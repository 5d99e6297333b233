/**
 * End-to-end rekey benchmark: the real Rekeyer (HEAD, KMS Decrypt + GenerateDataKey, GET, re-encryption in
 * the CipherPool, conditional multipart upload) against a plain streaming copy of the same objects (GET
 * into a lib-storage Upload, same client, part size, queue size and object concurrency, no crypto), in
 * alternating rounds against the same endpoint. The last lines are the median rekey/plain ratios of adjacent
 * rounds, which shared the machine's load most nearly: throughput (`rekey_vs_plain_copy`), then this
 * process' CPU per byte (`rekey_cpu_over_plain`; core-seconds per GB of each kind are printed above). Run: `node --import tsx bench/e2e-rekey.ts`.
 * Env: BENCH_ENDPOINTS (moto,versitygw), BENCH_OBJECTS (6), BENCH_OBJECT_MIB (64), BENCH_ROUNDS (5 per
 * kind), BENCH_PART_MIB and BENCH_QUEUE_SIZE (the product's defaults: 8, 4), BENCH_OBJECT_CONCURRENCY (4), BENCH_THREADS (cores).
 */
import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import pLimit from 'p-limit';
import { CipherPool } from '../src/crypto/pool.js';
import { KmsBatcher, type KmsObserver } from '../src/kms/batcher.js';
import { RedisRateLimiter } from '../src/kms/rate-limiter.js';
import { Rekeyer } from '../src/rotate/rekey.js';
import type { ObjectRef } from '../src/rotate/outcome.js';
import { rotationTarget } from '../src/rotate/target.js';
import { DEFAULT_PART_BYTES, DEFAULT_QUEUE_SIZE, partBytesFor } from '../src/s3/replacement-upload.js';
import { noJournal } from '../src/s3/upload-journal.js';
import { seedObjects } from '../scripts/seed/seed.js';
import { freshBucket, freshKmsKey, openStack, type TestKey, type TestStack } from '../test/helpers/stack.js';
import {
  cpuNote,
  dropBucket,
  envEndpoints,
  envNumber,
  endpointOverrides,
  formatSpread,
  gcPerGb,
  machineLine,
  mbPerSecond,
  MiB,
  seconds,
  spread,
  S3RequestLog,
  timed,
  type EndpointName,
  type Timed,
} from './support.js';

const ENDPOINTS = envEndpoints('BENCH_ENDPOINTS', ['moto', 'versitygw']);
const OBJECTS = envNumber('BENCH_OBJECTS', 6);
const OBJECT_BYTES = envNumber('BENCH_OBJECT_MIB', 64) * MiB;
const ROUNDS = envNumber('BENCH_ROUNDS', 5);
const PART_BYTES = envNumber('BENCH_PART_MIB', DEFAULT_PART_BYTES / MiB) * MiB;
const QUEUE_SIZE = envNumber('BENCH_QUEUE_SIZE', DEFAULT_QUEUE_SIZE);
const OBJECT_CONCURRENCY = envNumber('BENCH_OBJECT_CONCURRENCY', 4);
const THREADS = envNumber('BENCH_THREADS', availableParallelism());
/** KMS is not what is measured: a rate far above the 2 calls per object this benchmark makes. */
const KMS_RATE = 1000;

type Kind = 'plain' | 'rekey';

/** A timed round; its value is the bytes it moved. */
type Round = Timed<number> & { readonly kind: Kind };

/** KMS calls and their summed latency: each rekey waits for a Decrypt and a GenerateDataKey before its GET. */
interface KmsTotals {
  calls: number;
  seconds: number;
}

function kmsTotalling(totals: KmsTotals): KmsObserver {
  return {
    onCall: (event) => {
      totals.calls += 1;
      totals.seconds += event.seconds;
    },
  };
}

interface Setup {
  readonly stack: TestStack;
  readonly endpoint: EndpointName;
  readonly bucket: string;
  readonly refs: readonly ObjectRef[];
  readonly keys: readonly [TestKey, TestKey];
  readonly pool: CipherPool;
  readonly kms: KmsBatcher;
  readonly kmsTotals: KmsTotals;
  readonly requests: S3RequestLog;
}

/** GET streamed into a multipart upload of a sibling key: the data path of a rekey without its crypto. */
async function plainCopy(s3: S3Client, ref: ObjectRef): Promise<number> {
  const got = await s3.send(new GetObjectCommand({ Bucket: ref.bucket, Key: ref.key }));
  const size = got.ContentLength ?? 0;
  await new Upload({
    client: s3,
    partSize: partBytesFor(size, PART_BYTES),
    queueSize: QUEUE_SIZE,
    leavePartsOnError: false,
    params: { Bucket: ref.bucket, Key: `copy/${ref.key}`, Body: got.Body as Readable },
  }).done();
  return size;
}

async function plainRound(setup: Setup): Promise<number> {
  const limit = pLimit(OBJECT_CONCURRENCY);
  const sizes = await Promise.all(setup.refs.map((ref) => limit(() => plainCopy(setup.stack.s3, ref))));
  return sizes.reduce((a, b) => a + b, 0);
}

/** Rekeys every object to `target`; any object that does not rotate makes the figures meaningless. */
async function rekeyRound(setup: Setup, target: TestKey): Promise<number> {
  const rekeyer = new Rekeyer(
    { s3: setup.stack.s3, kms: setup.kms, pool: setup.pool, objectConcurrency: OBJECT_CONCURRENCY, upload: { partBytes: PART_BYTES, queueSize: QUEUE_SIZE } },
    rotationTarget({ mode: 'rekey', targetKey: target.keyId, targetKeyArn: target.arn, targetFormat: 'same', sourceKeyArns: [] }),
  );
  const outcomes = await rekeyer.rotate(setup.refs, noJournal);
  const bad = outcomes.find((o) => o.outcome !== 'rotated');
  if (bad) throw new Error(`${bad.ref.key}: ${bad.outcome}:${bad.reason} ${bad.message}`);
  return outcomes.reduce((sum, o) => sum + o.bytesRead, 0);
}

function roundLine(index: number, round: Round): string {
  const rate = mbPerSecond(round.value, round.seconds).toFixed(0);
  const gc = `GC ${round.gc.major} major, ${round.gc.minor} minor, ${round.gc.ms.toFixed(0)} ms`;
  return `  round ${index} ${round.kind.padEnd(5)} ${(round.value / MiB).toFixed(0)} MiB in ${round.seconds.toFixed(2)} s: ${rate} MB/s (${cpuNote(round)}; ${gc})`;
}

/** The requests of a round, to see where its time went. */
async function timedRound(setup: Setup, kind: Kind, run: () => Promise<number>, index: number): Promise<Round> {
  const before = setup.requests.snapshot();
  const kms = { ...setup.kmsTotals };
  const round = { ...(await timed(setup.endpoint, run)), kind };
  const calls = setup.kmsTotals.calls - kms.calls;
  const kmsNote = calls === 0 ? '' : `; KMS ×${calls} ${(((setup.kmsTotals.seconds - kms.seconds) / calls) * 1000).toFixed(0)} ms`;
  console.log(roundLine(index, round));
  console.log(`      S3 ${setup.requests.since(before)}${kmsNote}`);
  return round;
}

async function prepare(endpoint: EndpointName): Promise<Setup> {
  const stack = openStack(endpointOverrides(endpoint));
  const bucket = await freshBucket(stack.s3);
  const keys = [await freshKmsKey(stack.kms, 'bench old'), await freshKmsKey(stack.kms, 'bench new')] as const;
  const started = process.hrtime.bigint();
  const seeded = await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'obj/', count: OBJECTS, kmsKeyId: keys[0].keyId, sizes: [OBJECT_BYTES], concurrency: 2 });
  console.log(`${endpoint}: seeded ${OBJECTS} × ${OBJECT_BYTES / MiB} MiB (V2 and V3 alternating) in ${seconds(started).toFixed(1)} s`);
  const pool = new CipherPool({ threads: THREADS });
  const limiter = new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'bench-e2e', ratePerSecond: KMS_RATE });
  const kmsTotals: KmsTotals = { calls: 0, seconds: 0 };
  const kms = new KmsBatcher({ kms: stack.kms, limiter, observer: kmsTotalling(kmsTotals) });
  const requests = new S3RequestLog(stack.s3);
  return { stack, endpoint, bucket, refs: seeded.map((o) => ({ bucket, key: o.key })), keys, pool, kms, kmsTotals, requests };
}

/**
 * One untimed pair first (connections, JIT, cipher threads starting), then pairs whose order alternates
 * so that drift in the machine's load falls on both kinds alike. Rekeys go to the other key and back.
 */
async function measure(setup: Setup): Promise<Round[]> {
  let target = 1;
  const rekey = async () => {
    const bytes = await rekeyRound(setup, setup.keys[target]!);
    target = 1 - target;
    return bytes;
  };
  await plainRound(setup);
  await rekey();
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const pair: [Kind, () => Promise<number>][] = [['plain', () => plainRound(setup)], ['rekey', rekey]];
    if (i % 2 === 1) pair.reverse();
    for (const [kind, run] of pair) rounds.push(await timedRound(setup, kind, run, rounds.length + 1));
  }
  return rounds;
}

interface EndpointResult {
  readonly endpoint: EndpointName;
  /** MB/s of each kind over all its rounds. */
  readonly plain: number;
  readonly rekey: number;
  /** Median rekey/plain ratio of adjacent rounds: the figure the last line but one reports. */
  readonly ratio: number;
  /** Median rekey/plain ratio of this process' CPU per byte in adjacent rounds: the last line. */
  readonly cpuRatio: number;
}

/** Overall rate of a kind: all its bytes over all its time, so a slow round weighs as long as it took. */
function overall(rounds: readonly Round[], kind: Kind): number {
  const mine = rounds.filter((r) => r.kind === kind);
  return mbPerSecond(mine.reduce((s, r) => s + r.value, 0), mine.reduce((s, r) => s + r.seconds, 0));
}

/**
 * rekey/plain of a figure of each pair of adjacent rounds: the two ran under nearly the same load of the
 * shared machine.
 */
function pairRatios(rounds: readonly Round[], figure: (round: Round) => number): number[] {
  const ratios: number[] = [];
  for (let i = 0; i + 1 < rounds.length; i += 2) {
    const pair = [rounds[i]!, rounds[i + 1]!];
    const of = (kind: Kind) => figure(pair.find((r) => r.kind === kind)!);
    ratios.push(of('rekey') / of('plain'));
  }
  return ratios;
}

const rateOf = (r: Round) => mbPerSecond(r.value, r.seconds);
const cpuPerByteOf = (r: Round) => r.clientCpu / r.value;

/** CPU core-seconds per GB moved, of this process and of the server: what a kind costs whatever the load. */
function cpuPerGb(rounds: readonly Round[], kind: Kind): string {
  const mine = rounds.filter((r) => r.kind === kind);
  const gb = mine.reduce((s, r) => s + r.value, 0) / 1e9;
  const client = mine.reduce((s, r) => s + r.clientCpu, 0) / gb;
  const server = mine.every((r) => r.serverCpu !== undefined) ? `, server ${(mine.reduce((s, r) => s + r.serverCpu!, 0) / gb).toFixed(2)}` : '';
  return `cpu core-s per GB: bench process ${client.toFixed(2)}${server}`;
}

function summarise(endpoint: EndpointName, rounds: readonly Round[]): EndpointResult {
  const rates = (kind: Kind) => rounds.filter((r) => r.kind === kind).map((r) => mbPerSecond(r.value, r.seconds));
  const plain = overall(rounds, 'plain');
  const rekey = overall(rounds, 'rekey');
  const ratios = pairRatios(rounds, rateOf);
  const cpuRatios = pairRatios(rounds, cpuPerByteOf);
  const of = (kind: Kind) => rounds.filter((r) => r.kind === kind);
  console.log(`${endpoint}: plain copy ${plain.toFixed(0)} MB/s, per round ${formatSpread(spread(rates('plain')))}; ${cpuPerGb(rounds, 'plain')}; ${gcPerGb(of('plain'))}`);
  console.log(`${endpoint}: rekey      ${rekey.toFixed(0)} MB/s, per round ${formatSpread(spread(rates('rekey')))}; ${cpuPerGb(rounds, 'rekey')}; ${gcPerGb(of('rekey'))}`);
  console.log(`${endpoint}: rekey / plain copy: overall ${(rekey / plain).toFixed(3)}; adjacent pairs ${ratios.map((r) => r.toFixed(2)).join(' ')}, ${formatSpread(spread(ratios), 3)}`);
  console.log(`${endpoint}: rekey / plain copy, CPU per byte of this process: adjacent pairs ${cpuRatios.map((r) => r.toFixed(2)).join(' ')}, ${formatSpread(spread(cpuRatios), 3)}`);
  return { endpoint, plain, rekey, ratio: spread(ratios).median, cpuRatio: spread(cpuRatios).median };
}

async function runEndpoint(endpoint: EndpointName): Promise<EndpointResult> {
  const setup = await prepare(endpoint);
  try {
    return summarise(endpoint, await measure(setup));
  } finally {
    await setup.pool.close();
    await dropBucket(setup.stack.s3, setup.bucket);
    await setup.stack.close();
  }
}

console.log(machineLine());
console.log(`${OBJECTS} objects × ${OBJECT_BYTES / MiB} MiB, ${ROUNDS} timed rounds per kind, part ${PART_BYTES / MiB} MiB, queue ${QUEUE_SIZE}, ${OBJECT_CONCURRENCY} objects at once, ${THREADS} cipher threads`);
const results: EndpointResult[] = [];
for (const endpoint of ENDPOINTS) results.push(await runEndpoint(endpoint));
// The endpoint that copies faster bounds the measurement less: it is the one the last line reports.
const headline = results.reduce((best, r) => (r.plain > best.plain ? r : best));
const others = results.filter((r) => r !== headline).map((r) => `${r.endpoint} ${r.plain.toFixed(0)} MB/s`);
console.log(`last line: ${headline.endpoint}, the faster plain copy (${headline.plain.toFixed(0)} MB/s${others.length ? ` vs ${others.join(', ')}` : ''})`);
console.log(`rekey_vs_plain_copy=${headline.ratio.toFixed(3)}`);
console.log(`rekey_cpu_over_plain=${headline.cpuRatio.toFixed(3)}`);
