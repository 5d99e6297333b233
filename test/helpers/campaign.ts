import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { openReportStore, outcomesIn } from '../../src/campaign/report-store.js';
import type { Config } from '../../src/config/config.js';
import type { ObjectOutcome } from '../../src/rotate/outcome.js';
import { seedObjects, type SeededObject, type SeedPlan } from '../../scripts/seed/seed.js';
import { rekey } from './cli.js';
import { freshBucket, openStackWithKeys, type StackWithKeys, type TestStack } from './stack.js';
import { decryptObject } from './verify.js';

/** The stack, campaign store and old and new KMS keys every campaign suite starts from. */
export interface CampaignSuite extends StackWithKeys {
  readonly store: CampaignStore;
}

export async function openCampaignSuite(overrides: Partial<Config> = {}): Promise<CampaignSuite> {
  const opened = await openStackWithKeys(overrides);
  return { ...opened, store: new CampaignStore(opened.stack.redis, opened.stack.config.redisPrefix) };
}

export type Mode = CampaignArgs['mode'];
export type PerMode<T> = Record<Mode, T>;
const MODES = ['rewrap', 'rekey'] as const satisfies readonly Mode[];

/** A fresh bucket per mode, seeded one after the other with the plan `plan(mode)` gives. */
export async function seedPerMode(
  stack: TestStack,
  plan: (mode: Mode) => Omit<SeedPlan, 'bucket'>,
): Promise<{ buckets: PerMode<string>; seeded: PerMode<SeededObject[]> }> {
  const buckets = { rewrap: '', rekey: '' };
  const seeded = { rewrap: [] as SeededObject[], rekey: [] as SeededObject[] };
  for (const mode of MODES) {
    buckets[mode] = await freshBucket(stack.s3);
    seeded[mode] = await seedObjects(stack.s3, stack.kms, { ...plan(mode), bucket: buckets[mode] });
  }
  return { buckets, seeded };
}

/** A rewrap campaign of `buckets.rewrap`, then a rekey campaign of `buckets.rekey`, both to `targetKey`; their ids. */
export async function startPerMode(config: Config, buckets: PerMode<string>, targetKey: string, batchSize?: number): Promise<PerMode<string>> {
  return {
    rewrap: (await startCampaign(config, { bucket: buckets.rewrap, mode: 'rewrap', targetKey, batchSize })).id,
    rekey: (await startCampaign(config, { bucket: buckets.rekey, mode: 'rekey', targetKey, batchSize })).id,
  };
}

export interface CampaignArgs {
  readonly bucket: string;
  readonly mode: 'rewrap' | 'rekey';
  readonly targetKey: string;
  readonly batchSize?: number;
  readonly extra?: readonly string[];
}

/** `rekey start` as a user runs it; resolves to the campaign id once every object is queued. */
export async function startCampaign(config: Config, args: CampaignArgs): Promise<{ id: string; planned: number }> {
  const started = await rekey(config, [
    'start',
    '--bucket', args.bucket,
    '--mode', args.mode,
    '--target-key', args.targetKey,
    '--batch-size', String(args.batchSize ?? 20),
    '--json',
    ...(args.extra ?? []),
  ], { REDIS_URL: config.redisUrl });
  if (started.code !== 0) throw new Error(`rekey start exited ${started.code}: ${started.stderr}`);
  return JSON.parse(started.stdout) as { id: string; planned: number };
}

export async function waitForCampaign(
  store: CampaignStore,
  id: string,
  options: { timeoutMs: number; onTick?: (status: CampaignStatus) => Promise<void> | void },
): Promise<CampaignStatus> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const status = await store.status(id);
    if (status.finishedAt !== undefined) return status;
    if (Date.now() > deadline) throw new Error(`campaign ${id} did not end in ${options.timeoutMs} ms: ${JSON.stringify({ ...status, spec: undefined })}`);
    await options.onTick?.(status);
    await sleep(250);
  }
}

/** Every row of a campaign, read from its report store as `rekey report` does. */
export async function outcomesOf(store: CampaignStore, id: string, s3: S3Client): Promise<ObjectOutcome[]> {
  const all: ObjectOutcome[] = [];
  for await (const outcome of outcomesIn(openReportStore(s3, (await store.spec(id)).reportTo, id))) all.push(outcome);
  return all;
}

/**
 * Exactly one outcome per object: the report has one row for each expected key and no other, no
 * duplicate, and the counters agree with it. A listing also plans the instruction files beside the
 * objects (they move with their object): each has at most one row, never `rotated`.
 */
export async function assertOneOutcomeEach(store: CampaignStore, id: string, s3: S3Client, bucket: string, keys: readonly string[]): Promise<Map<string, ObjectOutcome>> {
  const outcomes = await outcomesOf(store, id, s3);
  const expected = new Set(keys);
  const byKey = new Map<string, ObjectOutcome>();
  const files = new Set<string>();
  for (const o of outcomes) {
    assert.equal(o.ref.bucket, bucket);
    if (!expected.has(o.ref.key) && o.ref.key.endsWith('.instruction') && expected.has(o.ref.key.slice(0, -'.instruction'.length))) {
      assert.ok(!files.has(o.ref.key), `${o.ref.key} has two outcomes`);
      assert.notEqual(o.outcome, 'rotated', `${o.ref.key} is an instruction file: ${o.message}`);
      files.add(o.ref.key);
      continue;
    }
    assert.ok(!byKey.has(o.ref.key), `${o.ref.key} has two outcomes: ${byKey.get(o.ref.key)?.outcome} and ${o.outcome}`);
    byKey.set(o.ref.key, o);
  }
  const missing = keys.filter((k) => !byKey.has(k));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} objects have no outcome`);
  assert.equal(byKey.size, keys.length, 'no outcome for an object outside the campaign');
  const status = await store.status(id);
  assert.equal(status.planned, keys.length + files.size);
  assert.equal(status.done, keys.length + files.size);
  assert.equal(status.rotated + status.skipped + status.failed, keys.length + files.size);
  return byKey;
}

export async function openUploads(s3: S3Client, bucket: string): Promise<{ key: string; uploadId: string }[]> {
  const open: { key: string; uploadId: string }[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
    for (const u of out.Uploads ?? []) open.push({ key: u.Key!, uploadId: u.UploadId! });
    if (!out.IsTruncated) return open;
    keyMarker = out.NextKeyMarker;
    uploadIdMarker = out.NextUploadIdMarker;
  }
}

/** An object exactly as stored: the ciphertext's digest, its ETag and its user metadata. */
export interface RawObject {
  readonly sha256: string;
  readonly etag: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export async function rawObject(s3: S3Client, bucket: string, key: string): Promise<RawObject> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const body = Buffer.from(await got.Body!.transformToByteArray());
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  return { sha256: createHash('sha256').update(body).digest('hex'), etag: head.ETag!, metadata: head.Metadata ?? {} };
}

export interface Expected {
  readonly key: string;
  readonly sha256: string;
}

/**
 * Every object decrypts, through its own envelope, to the bytes it was seeded with; returns how many
 * ended under each KMS key.
 */
export async function assertAllDecrypt(stack: TestStack, bucket: string, objects: readonly Expected[], concurrency = 8): Promise<Map<string, number>> {
  const limit = pLimit(concurrency);
  const byKey = new Map<string, number>();
  const wrong: string[] = [];
  await Promise.all(
    objects.map((o) =>
      limit(async () => {
        const d = await decryptObject(stack, bucket, o.key).catch((err: Error) => ({ sha256: `error: ${err.message}`, keyId: 'none' }));
        if (d.sha256 !== o.sha256) wrong.push(`${o.key}: ${d.sha256.slice(0, 80)}`);
        byKey.set(d.keyId, (byKey.get(d.keyId) ?? 0) + 1);
      }),
    ),
  );
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} objects do not decrypt to their original bytes`);
  return byKey;
}

export interface CleanEnd {
  readonly mode: Mode;
  readonly id: string;
  readonly bucket: string;
  readonly seeded: readonly SeededObject[];
  readonly newKeyArn: string;
  readonly timeoutMs: number;
}

/**
 * Waits for a campaign and asserts it came through the run's trouble unharmed: one outcome per seeded
 * object, each rotated (or skipped:already-rotated), no upload left open, every object decrypting to
 * its original bytes under the new key. Resolves to the final status, for the figures.
 */
export async function assertEndsClean(stack: TestStack, store: CampaignStore, run: CleanEnd): Promise<CampaignStatus> {
  const final = await waitForCampaign(store, run.id, { timeoutMs: run.timeoutMs });
  const outcomes = await assertOneOutcomeEach(store, run.id, stack.s3, run.bucket, run.seeded.map((o) => o.key));
  const odd = [...outcomes.values()].filter((o) => o.outcome !== 'rotated' && o.reason !== 'already-rotated');
  assert.deepEqual(odd.map((o) => `${o.ref.key} ${o.outcome}:${o.reason} ${o.message}`), [], `${run.mode}: ${JSON.stringify(final.byReason)}`);
  assert.deepEqual(await openUploads(stack.s3, run.bucket), [], `${run.mode}: no multipart upload is left open`);
  assert.deepEqual([...(await assertAllDecrypt(stack, run.bucket, run.seeded)).keys()], [run.newKeyArn]);
  return final;
}
