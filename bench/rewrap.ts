/**
 * Rewrap benchmark: many small S3EC objects sharing few data keys, rewrapped by the real Rewrapper (HEAD,
 * one KMS ReEncrypt per distinct wrapped key and batch, conditional self-copy), against the endpoint's raw
 * rates in the same run: HEAD, and the same conditional self-copy (CopySourceIfMatch, MetadataDirective
 * REPLACE with the object's own metadata) at the same S3 concurrency. The objects are cut into slices;
 * each slice is measured raw and rewrapped, in alternating order; the last line is the median of the
 * slices' rewrap / (HEAD then copy) ratios, `rewrap_vs_bound` (issue 13: the objects/s a HEAD and a conditional
 * copy per object allow at the raw rates), after `rewrap_vs_copy`. Run: `node --import tsx bench/rewrap.ts`.
 * Env: BENCH_ENDPOINT (versitygw: it enforces CopySourceIfMatch as S3 does, moto ignores it),
 * BENCH_OBJECTS (10000), BENCH_DATA_KEYS (100), BENCH_BATCH (200 objects per Rewrapper batch),
 * BENCH_BATCHES_IN_FLIGHT (4, as a campaign worker's job concurrency), BENCH_S3_CONCURRENCY (16, the
 * Rewrapper's default per batch; raw requests run at this times the batches in flight), BENCH_SLICES (5).
 */
import { CopyObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { KmsBatcher, type KmsObserver } from '../src/kms/batcher.js';
import { RedisRateLimiter } from '../src/kms/rate-limiter.js';
import type { ObjectRef } from '../src/rotate/outcome.js';
import { Rewrapper } from '../src/rotate/rewrap.js';
import { rotationTarget } from '../src/rotate/target.js';
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
  machineLine,
  seconds,
  spread,
  S3RequestLog,
  timed,
  type Timed,
} from './support.js';

const [ENDPOINT = 'versitygw'] = envEndpoints('BENCH_ENDPOINT', ['versitygw']);
const OBJECTS = envNumber('BENCH_OBJECTS', 10_000);
const DATA_KEYS = envNumber('BENCH_DATA_KEYS', 100);
const BATCH = envNumber('BENCH_BATCH', 200);
const BATCHES_IN_FLIGHT = envNumber('BENCH_BATCHES_IN_FLIGHT', 4);
const S3_CONCURRENCY = envNumber('BENCH_S3_CONCURRENCY', 16);
const SLICES = envNumber('BENCH_SLICES', 5);
const RAW_CONCURRENCY = S3_CONCURRENCY * BATCHES_IN_FLIGHT;
/** KMS is not what is measured: far above the ReEncrypt calls this benchmark makes. */
const KMS_RATE = 1000;

/** What a HEAD told, all a conditional self-copy needs to keep the object as it is. */
interface Headed {
  readonly ref: ObjectRef;
  readonly etag: string;
  readonly metadata: Record<string, string>;
  readonly contentType: string | undefined;
}

type Kind = 'head' | 'copy' | 'rewrap';

interface KmsCounts {
  reencrypt: number;
  reencryptSeconds: number;
  requests: number;
}

function countingObserver(counts: KmsCounts): KmsObserver {
  return {
    onCall: (event) => {
      if (event.operation !== 'ReEncrypt') return;
      counts.reencrypt += 1;
      counts.reencryptSeconds += event.seconds;
    },
    onBatch: (event) => {
      counts.requests += event.requests;
    },
  };
}

function inParallel<T, R>(items: readonly T[], concurrency: number, each: (item: T) => Promise<R>): Promise<R[]> {
  const limit = pLimit(concurrency);
  return Promise.all(items.map((item) => limit(() => each(item))));
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

async function rawHead(s3: S3Client, ref: ObjectRef): Promise<Headed> {
  const out = await s3.send(new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }));
  return { ref, etag: out.ETag!, metadata: out.Metadata ?? {}, contentType: out.ContentType };
}

/** The request rewrap's replaceMetadata sends, with the metadata unchanged so the object stays valid. */
async function rawCopy(s3: S3Client, object: Headed): Promise<void> {
  await s3.send(
    new CopyObjectCommand({
      Bucket: object.ref.bucket,
      Key: object.ref.key,
      CopySource: `${object.ref.bucket}/${object.ref.key}`,
      CopySourceIfMatch: object.etag,
      MetadataDirective: 'REPLACE',
      TaggingDirective: 'COPY',
      Metadata: object.metadata,
      ContentType: object.contentType,
    }),
  );
}

/** Batches of the slice through one Rewrapper, several at once as a worker runs jobs; all must rotate. */
async function rewrapSlice(rewrapper: Rewrapper, refs: readonly ObjectRef[]): Promise<void> {
  const outcomes = (await inParallel(chunks(refs, BATCH), BATCHES_IN_FLIGHT, (batch) => rewrapper.rotate(batch, noJournal))).flat();
  const bad = outcomes.find((o) => o.outcome !== 'rotated');
  if (bad) throw new Error(`${bad.ref.key}: ${bad.outcome}:${bad.reason} ${bad.message}`);
}

interface Phase {
  readonly kind: Kind;
  readonly objects: number;
  readonly timing: Timed<unknown>;
}

interface Setup {
  readonly stack: TestStack;
  readonly bucket: string;
  readonly refs: readonly ObjectRef[];
  readonly keys: readonly [TestKey, TestKey];
  readonly kms: KmsBatcher;
}

async function prepare(stack: TestStack, counts: KmsCounts): Promise<Setup> {
  const bucket = await freshBucket(stack.s3);
  const keys = [await freshKmsKey(stack.kms, 'bench old'), await freshKmsKey(stack.kms, 'bench new')] as const;
  const started = process.hrtime.bigint();
  const seeded = await seedObjects(stack.s3, stack.kms, {
    bucket,
    prefix: 'obj/',
    count: OBJECTS,
    kmsKeyId: keys[0].keyId,
    objectsPerDataKey: Math.ceil(OBJECTS / DATA_KEYS),
    concurrency: RAW_CONCURRENCY,
  });
  const secs = seconds(started);
  console.log(`seeded ${OBJECTS} objects of 1 KiB (V2 and V3 alternating, ${DATA_KEYS} data keys) in ${secs.toFixed(1)} s: ${(OBJECTS / secs).toFixed(0)} objects/s`);
  const limiter = new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'bench-rewrap', ratePerSecond: KMS_RATE });
  const kms = new KmsBatcher({ kms: stack.kms, limiter, observer: countingObserver(counts) });
  return { stack, bucket, refs: seeded.map((o) => ({ bucket, key: o.key })), keys, kms };
}

/**
 * Every slice is measured three ways: raw HEAD (which also reads the metadata the raw copy keeps),
 * raw copy, and rewrap. The first slice starts raw, the second with the rewrap, and so on, so drift
 * in the shared machine's load falls on both alike.
 */
async function measure(setup: Setup): Promise<Phase[]> {
  const { s3 } = setup.stack;
  const rewrapper = new Rewrapper(
    { s3, kms: setup.kms, s3Concurrency: S3_CONCURRENCY },
    rotationTarget({ mode: 'rewrap', targetKey: setup.keys[1].keyId, targetKeyArn: setup.keys[1].arn, targetFormat: 'same', sourceKeyArns: [] }),
  );
  const requests = new S3RequestLog(s3);
  const phases: Phase[] = [];
  const phase = async <T>(kind: Kind, objects: number, run: () => Promise<T>): Promise<T> => {
    const before = requests.snapshot();
    const timing = await timed(ENDPOINT, run);
    phases.push({ kind, objects, timing });
    const rate = (objects / timing.seconds).toFixed(0);
    console.log(`  slice ${Math.ceil(phases.length / 3)} ${kind.padEnd(6)} ${objects} objects in ${timing.seconds.toFixed(2)} s: ${rate}/s (${cpuNote(timing)}; ${requests.since(before)}; ${requests.meanInFlight(before, timing.seconds).toFixed(0)} in flight on average)`);
    return timing.value;
  };
  const sliceSize = Math.ceil(setup.refs.length / SLICES);
  /* Precondition: a slice fills every batch lane, or the rewrap would run at less than the raw concurrency. */
  if (sliceSize < BATCH * BATCHES_IN_FLIGHT) {
    throw new RangeError(`a slice of ${sliceSize} objects cannot keep ${BATCHES_IN_FLIGHT} batches of ${BATCH} in flight: lower BENCH_SLICES`);
  }
  for (const [i, slice] of chunks(setup.refs, sliceSize).entries()) {
    const raw = async (): Promise<void> => {
      const headed = await phase('head', slice.length, () => inParallel(slice, RAW_CONCURRENCY, (ref) => rawHead(s3, ref)));
      await phase('copy', slice.length, () => inParallel(headed, RAW_CONCURRENCY, (o) => rawCopy(s3, o)));
    };
    const rewrap = (): Promise<void> => phase('rewrap', slice.length, () => rewrapSlice(rewrapper, slice));
    for (const step of i % 2 === 0 ? [raw, rewrap] : [rewrap, raw]) await step();
  }
  return phases;
}

/** Objects per second of a kind: all its objects over all its time. */
function overall(phases: readonly Phase[], kind: Kind): number {
  const mine = phases.filter((p) => p.kind === kind);
  return mine.reduce((s, p) => s + p.objects, 0) / mine.reduce((s, p) => s + p.timing.seconds, 0);
}

/** A rewrap needs a HEAD and a copy per object: at the raw rates, that alone allows this many objects/s. */
function headThenCopy(head: number, copy: number): number {
  return 1 / (1 / head + 1 / copy);
}

interface SliceRatios {
  /** rewrap / raw copy. */
  readonly copy: number;
  /** rewrap / the HEAD-then-copy bound. */
  readonly bound: number;
}

/** rewrap against the raw rates of each slice: the three ran close together, under nearly the same load of the shared machine. */
function sliceRatios(phases: readonly Phase[]): SliceRatios[] {
  return chunks(phases, 3).map((slice) => {
    const rate = (kind: Kind) => slice.filter((p) => p.kind === kind).map((p) => p.objects / p.timing.seconds)[0]!;
    return { copy: rate('rewrap') / rate('copy'), bound: rate('rewrap') / headThenCopy(rate('head'), rate('copy')) };
  });
}

/** Prints the rates of each kind; returns the median ratios of the slices. */
function summarise(phases: readonly Phase[]): SliceRatios {
  const rates = (kind: Kind) => phases.filter((p) => p.kind === kind).map((p) => p.objects / p.timing.seconds);
  const [head, copy, rewrap] = (['head', 'copy', 'rewrap'] as const).map((kind) => {
    const rate = overall(phases, kind);
    console.log(`${kind.padEnd(6)} ${rate.toFixed(0)} objects/s, per slice ${formatSpread(spread(rates(kind)))}`);
    return rate;
  }) as [number, number, number];
  const ceiling = headThenCopy(head, copy);
  console.log(`raw HEAD then copy per object: ${ceiling.toFixed(0)} objects/s = ${(ceiling / copy).toFixed(3)} of the copy rate; rewrap reaches ${(rewrap / ceiling).toFixed(3)} of it`);
  const slices = sliceRatios(phases);
  const ratios = slices.map((r) => r.copy);
  const bounds = slices.map((r) => r.bound);
  console.log(`rewrap / copy: overall ${(rewrap / copy).toFixed(3)}; per slice ${ratios.map((r) => r.toFixed(2)).join(' ')}, ${formatSpread(spread(ratios), 3)}`);
  console.log(`rewrap / HEAD-then-copy bound: overall ${(rewrap / ceiling).toFixed(3)}; per slice ${bounds.map((r) => r.toFixed(2)).join(' ')}, ${formatSpread(spread(bounds), 3)}`);
  return { copy: spread(ratios).median, bound: spread(bounds).median };
}

async function main(): Promise<void> {
  console.log(machineLine());
  console.log(`endpoint ${ENDPOINT}; ${OBJECTS} objects, ${DATA_KEYS} data keys, batches of ${BATCH}, ${BATCHES_IN_FLIGHT} batches in flight × ${S3_CONCURRENCY} S3 requests; raw requests ${RAW_CONCURRENCY} at once; ${SLICES} slices`);
  const stack = openStack(endpointOverrides(ENDPOINT));
  const counts: KmsCounts = { reencrypt: 0, reencryptSeconds: 0, requests: 0 };
  try {
    const setup = await prepare(stack, counts);
    try {
      const ratios = summarise(await measure(setup));
      const latency = ((counts.reencryptSeconds / counts.reencrypt) * 1000).toFixed(0);
      console.log(`KMS: ${counts.requests} rewrap requests, ${counts.reencrypt} ReEncrypt calls (${latency} ms each on average) for ${DATA_KEYS} data keys`);
      console.log(`reencrypt_calls=${counts.reencrypt}`);
      console.log(`rewrap_vs_copy=${ratios.copy.toFixed(3)}`);
      console.log(`rewrap_vs_bound=${ratios.bound.toFixed(3)}`);
    } finally {
      await dropBucket(stack.s3, setup.bucket);
    }
  } finally {
    await stack.close();
  }
}

await main();
