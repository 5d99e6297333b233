import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import type { CampaignStatus } from '../../../src/campaign/spec.js';
import { CampaignStore, objectId } from '../../../src/campaign/store.js';
import type { Config } from '../../../src/config/config.js';
import type { ObjectOutcome } from '../../../src/rotate/outcome.js';
import { rekey } from '../../helpers/cli.js';
import type { TestStack } from '../../helpers/stack.js';
import { decryptObject } from '../../helpers/verify.js';

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

export async function outcomesOf(store: CampaignStore, id: string): Promise<ObjectOutcome[]> {
  const all: ObjectOutcome[] = [];
  for await (const outcome of store.outcomes(id)) all.push(outcome);
  return all;
}

/**
 * Exactly one outcome per object: the report has one row for each expected key and no other, the
 * outcome log no duplicate, and the counters agree with both.
 */
export async function assertOneOutcomeEach(store: CampaignStore, id: string, bucket: string, keys: readonly string[]): Promise<Map<string, ObjectOutcome>> {
  const outcomes = await outcomesOf(store, id);
  const byKey = new Map<string, ObjectOutcome>();
  for (const o of outcomes) {
    assert.equal(o.ref.bucket, bucket);
    assert.ok(!byKey.has(o.ref.key), `${o.ref.key} has two outcomes: ${byKey.get(o.ref.key)?.outcome} and ${o.outcome}`);
    byKey.set(o.ref.key, o);
  }
  const missing = keys.filter((k) => !byKey.has(k));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} objects have no outcome`);
  assert.equal(byKey.size, keys.length, 'no outcome for an object outside the campaign');
  const status = await store.status(id);
  assert.equal(status.planned, keys.length);
  assert.equal(status.done, keys.length);
  assert.equal(status.rotated + status.skipped + status.failed, keys.length);
  for (const key of keys) assert.ok(await store.hasOutcome(id, { bucket, key }), objectId({ bucket, key }));
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
