import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  type HeadObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { makeS3Client } from '../../src/config/clients.js';
import { isS3ecMetadataKey } from '../../src/formats/index.js';
import { FaultProxy, s3Error, type Fault } from '../helpers/kms-fault-proxy.js';
import type { ObjectOutcome } from '../../src/rotate/outcome.js';
import { freshBucket, openStackWithKeys, strictS3, uniqueName, type TestKey, type TestStack } from '../helpers/stack.js';
import { decryptObject } from '../helpers/verify.js';
import { openUploads, rawObject } from '../helpers/campaign.js';
import { label, Rotators, type RotateMode } from '../helpers/rotators.js';
import { s3Operation, type S3Operation } from '../helpers/s3-ops.js';
import { putSealed, seal } from '../helpers/sealed.js';

const MiB = 1024 * 1024;

interface RaceCase {
  readonly name: string;
  readonly mode: RotateMode;
  readonly size: number;
  readonly instructionFile: boolean;
  /** The write rekey makes last, held by the proxy while the other writer goes first. */
  readonly held: S3Operation;
}

const RACES: readonly RaceCase[] = [
  { name: 'rewrap, envelope in metadata (conditional self-copy)', mode: 'rewrap', size: 1000, instructionFile: false, held: 'CopyObject' },
  { name: 'rewrap, envelope in an instruction file (conditional put)', mode: 'rewrap', size: 1000, instructionFile: true, held: 'PutObject' },
  { name: 'rekey, single-part replacement (If-Match PUT)', mode: 'rekey', size: 1000, instructionFile: false, held: 'PutObject' },
  { name: 'rekey, multipart replacement (If-Match completion)', mode: 'rekey', size: 7 * MiB, instructionFile: false, held: 'CompleteMultipartUpload' },
];

/** docs/design.md §4.2, on versitygw (moto ignores CopySourceIfMatch and If-Match on completion). */
describe('no lost update: another writer that goes first wins', () => {
  let rig: RaceRig;
  before(async () => {
    rig = await openRaceRig();
  });
  after(() => rig.close());

  for (const c of RACES.flatMap((r) => [{ ...r, versioned: false }, { ...r, versioned: true }])) {
    test(`${c.name}${c.versioned ? ', versioned bucket' : ''}`, async () => {
      const { stack, oldKey } = rig;
      const bucket = await freshBucket(stack.s3, { versioned: c.versioned });
      const sealed = await seal(stack.kms, randomBytes(c.size), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: c.instructionFile });
      await putSealed(stack.s3, bucket, 'obj', sealed);
      // The writer overwrites whatever rekey is about to replace: the object, or its instruction file.
      const contested = c.instructionFile ? 'obj.instruction' : 'obj';

      const rotation = await rig.holdRotation(c.mode, bucket, 'obj', c.held);
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: contested, Body: 'their bytes', Metadata: { by: 'them' } }));
      const theirs = await rawObject(stack.s3, bucket, contested);
      const outcome = await rotation.release();

      assert.equal(label(outcome), 'skipped:changed', outcome.message);
      assert.deepEqual(await rawObject(stack.s3, bucket, contested), theirs, 'the other writer’s bytes and metadata survive');
      assert.deepEqual(await openUploads(stack.s3, bucket), []);
    });
  }
});

/**
 * BullMQ delivers a job at least once: after a lapsed lock a second worker rotates the same object.
 * The loser's write fails its condition; the object is rotated, so its report must not blame another
 * writer, and an upload aborted under a worker (by the second worker's cleanup) is not a deleted object.
 */
describe('two workers on the same object (a job taken over while its worker still runs)', () => {
  let rig: RaceRig;
  before(async () => {
    rig = await openRaceRig();
  });
  after(() => rig.close());

  for (const c of RACES.filter((r) => !r.instructionFile)) {
    // A self-copy that only rewrites metadata keeps the ETag (the body's MD5), so the slower rewrap's
    // condition still holds: it lands too, a second valid wrapping of the same data key.
    const expected = c.mode === 'rewrap' ? 'rotated' : 'skipped:already-rotated';
    test(`${c.name}: the slower worker reports ${expected}`, async () => {
      const { stack, rotators, oldKey } = rig;
      const bucket = await freshBucket(stack.s3);
      const sealed = await seal(stack.kms, randomBytes(c.size), { kmsKeyId: oldKey.keyId, format: 'v3' });
      await putSealed(stack.s3, bucket, 'obj', sealed);

      const slower = await rig.holdRotation(c.mode, bucket, 'obj', c.held);
      assert.equal(label(await rotators.rotateOne(c.mode, stack.s3, bucket, 'obj')), 'rotated');
      const winner = await rawObject(stack.s3, bucket, 'obj');
      const outcome = await slower.release();

      assert.equal(label(outcome), expected, outcome.message);
      if (c.mode === 'rekey') assert.deepEqual(await rawObject(stack.s3, bucket, 'obj'), winner, 'the first rotation stands');
      else assert.equal((await rawObject(stack.s3, bucket, 'obj')).sha256, winner.sha256, 'the ciphertext is never touched');
      const d = await decryptObject(stack, bucket, 'obj');
      assert.deepEqual([d.sha256, d.keyId], [sealed.plaintextSha256, rotators.targetArn]);
      assert.deepEqual(await openUploads(stack.s3, bucket), []);
    });
  }

  // However the server refuses a part of an aborted upload, the SDK may see its answer or only a reset
  // connection (versitygw answers before reading the body and closes; the SDK then retries until the
  // object's retry budget is spent): the upload is gone, not the object, so the object is tried again.
  const refusals: Record<string, Fault | undefined> = {
    'the server itself answers the held part': undefined,
    'every part is answered NoSuchUpload': s3Error('NoSuchUpload', 404),
    'every part’s connection is reset unanswered': { kind: 'reset' },
  };
  for (const [name, refusal] of Object.entries(refusals)) {
    test(`a multipart upload aborted under its worker is a retryable s3-error, not a deleted object: ${name}`, async () => {
      const { stack, oldKey } = rig;
      const bucket = await freshBucket(stack.s3);
      const sealed = await seal(stack.kms, randomBytes(7 * MiB), { kmsKeyId: oldKey.keyId, format: 'v2' });
      await putSealed(stack.s3, bucket, 'obj', sealed);
      const before = await rawObject(stack.s3, bucket, 'obj');
      // A part in flight, not the completion: versitygw 1.8.0 answers 200 to an If-Match completion of
      // an aborted upload (and completes nothing), where S3 answers NoSuchUpload.
      const rotation = await rig.holdRotation('rekey', bucket, 'obj', 'UploadPart');
      for (const upload of await openUploads(stack.s3, bucket)) {
        await stack.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId }));
      }
      const outcome = await rotation.release(refusal);

      assert.equal(label(outcome), 'failed:s3-error', outcome.message);
      assert.equal(outcome.retryable, true, `the campaign tries the object again: ${outcome.message}`);
      assert.match(outcome.message, /aborted meanwhile/);
      assert.deepEqual(await rawObject(stack.s3, bucket, 'obj'), before);
    });
  }

});

/** docs/design.md §4.5: object lock and legal holds are reported, never bypassed (moto implements both). */
describe('object lock and legal holds', () => {
  let stack: TestStack;
  let rotators: Rotators;
  let oldKey: TestKey;
  let bucket: string;
  const locks = {
    'legal-hold': async (key: string) => {
      await stack.s3.send(new PutObjectLegalHoldCommand({ Bucket: bucket, Key: key, LegalHold: { Status: 'ON' } }));
    },
    governance: async (key: string) => {
      await stack.s3.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: tomorrow() } }));
    },
    compliance: async (key: string) => {
      await stack.s3.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: tomorrow() } }));
    },
  } as const;

  before(async () => {
    const opened = await openStackWithKeys();
    ({ stack, oldKey } = opened);
    rotators = new Rotators(stack, opened.newKey);
    bucket = uniqueName('lock');
    await stack.s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  });
  after(async () => {
    await rotators.close();
    await stack.close();
  });

  for (const mode of ['rewrap', 'rekey'] as const) {
    test(`${mode}: a locked object is skipped:object-locked and left exactly as it was`, async () => {
      const keys = [...Object.keys(locks), 'unlocked'].map((k) => `${mode}/${k}`);
      for (const key of keys) await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(3000), { kmsKeyId: oldKey.keyId, format: 'v3' }));
      for (const [kind, lock] of Object.entries(locks)) await lock(`${mode}/${kind}`);
      const before = await Promise.all(keys.map(async (key) => ({ raw: await rawObject(stack.s3, bucket, key), versions: await versionsOf(stack.s3, bucket, key) })));

      const outcomes = await rotators.rotate(mode, stack.s3, keys.map((key) => ({ bucket, key })));
      assert.deepEqual(
        Object.fromEntries(outcomes.map((o) => [o.ref.key, label(o)])),
        { [`${mode}/legal-hold`]: 'skipped:object-locked', [`${mode}/governance`]: 'skipped:object-locked', [`${mode}/compliance`]: 'skipped:object-locked', [`${mode}/unlocked`]: 'rotated' },
      );
      for (const [i, key] of keys.entries()) {
        if (key.endsWith('unlocked')) continue;
        assert.deepEqual(await rawObject(stack.s3, bucket, key), before[i]!.raw, `${key} is byte-identical`);
        assert.deepEqual(await versionsOf(stack.s3, bucket, key), before[i]!.versions, `${key} has no new version`);
      }
    });
  }
});

/** docs/design.md §4.5: everything an object carries besides its envelope survives both modes. */
describe('everything else kept: metadata, content headers, tags, storage class, SSE', () => {
  let stack: TestStack;
  let rotators: Rotators;
  let oldKey: TestKey;
  let newKey: TestKey;
  let bucket: string;
  const headers = {
    ContentType: 'application/x-reliability',
    ContentEncoding: 'identity',
    ContentLanguage: 'de-CH',
    ContentDisposition: 'attachment; filename="bericht.bin"',
    CacheControl: 'max-age=600, private',
    Expires: new Date('2031-01-02T03:04:05Z'),
    StorageClass: 'STANDARD_IA',
    ServerSideEncryption: 'AES256',
  } as const;
  const userMetadata = { owner: 'team-a', 'project-name': 'Zürich Straße', empty: '' };
  const tagging = 'env=prod&class=secret%20stuff';

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    rotators = new Rotators(stack, newKey);
    bucket = await freshBucket(stack.s3);
  });
  after(async () => {
    await rotators.close();
    await stack.close();
  });

  const cases = [
    { mode: 'rewrap', size: 2000, instructionFile: false },
    { mode: 'rewrap', size: 2000, instructionFile: true },
    { mode: 'rekey', size: 2000, instructionFile: false },
    { mode: 'rekey', size: 2000, instructionFile: true },
    { mode: 'rekey', size: 11 * MiB, instructionFile: false },
  ] as const;
  for (const c of cases) {
    test(`${c.mode} of a ${c.size}-byte object, envelope in ${c.instructionFile ? 'an instruction file' : 'metadata'}`, async () => {
      const key = `${c.mode}-${c.size}-${c.instructionFile}`;
      const sealed = await seal(stack.kms, randomBytes(c.size), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: c.instructionFile, context: { tenant: 'ü' } });
      await putSealed(stack.s3, bucket, key, sealed, { ...headers, Metadata: encodeNonAscii(userMetadata), Tagging: tagging });
      const before = await keptOf(stack.s3, bucket, key);
      assert.deepEqual(before.headers, headers, 'the store kept every attribute to begin with');
      assert.deepEqual(before.tags, { env: 'prod', class: 'secret stuff' });

      const outcome = await rotators.rotateOne(c.mode, stack.s3, bucket, key);
      assert.equal(label(outcome), 'rotated', outcome.message);
      assert.deepEqual(await keptOf(stack.s3, bucket, key), before);
      const d = await decryptObject(stack, bucket, key);
      assert.deepEqual([d.sha256, d.keyId], [sealed.plaintextSha256, newKey.arn]);
    });
  }
});

/**
 * Rotators on the strict S3 (versitygw), and a fault proxy in front of it through which a test sends
 * one rotation, so it can hold that rotation's write and act while it waits.
 */
interface RaceRig {
  readonly stack: TestStack;
  readonly rotators: Rotators;
  readonly oldKey: TestKey;
  /**
   * Starts a rotation through the proxy; resolves once its first `op` request is held. `release`
   * forwards it, or, given a fault, drops it and answers every later `op` request with that fault; it
   * then awaits the outcome.
   */
  holdRotation(mode: RotateMode, bucket: string, key: string, op: S3Operation): Promise<{ release(then?: Fault): Promise<ObjectOutcome> }>;
  close(): Promise<void>;
}

async function openRaceRig(): Promise<RaceRig> {
  const { stack, oldKey, newKey } = await openStackWithKeys(strictS3());
  const rotators = new Rotators(stack, newKey);
  const proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
  return {
    stack,
    rotators,
    oldKey,
    async holdRotation(mode, bucket, key, op) {
      proxy.clearFaults();
      proxy.inject({ fault: { kind: 'hold' }, match: s3Operation(op), times: 1 });
      const rotation = rotators.rotateOne(mode, proxied, bucket, key);
      const held = await proxy.nextHeld(30_000);
      return {
        release: (then) => {
          if (then === undefined) proxy.release(held, 'forward');
          else {
            proxy.inject({ fault: then, match: s3Operation(op) });
            proxy.release(held, 'drop');
          }
          return rotation;
        },
      };
    },
    async close() {
      proxied.destroy();
      await proxy.close();
      await rotators.close();
      await stack.close();
    },
  };
}

interface Kept {
  readonly metadata: Record<string, string>;
  readonly headers: Partial<HeadObjectCommandOutput>;
  readonly tags: Record<string, string>;
}

/** What a rotation must keep: the object's user metadata without the envelope, its headers and tags. */
async function keptOf(s3: S3Client, bucket: string, key: string): Promise<Kept> {
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key }));
  return {
    metadata: Object.fromEntries(Object.entries(head.Metadata ?? {}).filter(([k]) => !isS3ecMetadataKey(k))),
    headers: {
      ContentType: head.ContentType,
      ContentEncoding: head.ContentEncoding,
      ContentLanguage: head.ContentLanguage,
      ContentDisposition: head.ContentDisposition,
      CacheControl: head.CacheControl,
      Expires: head.Expires,
      StorageClass: head.StorageClass,
      ServerSideEncryption: head.ServerSideEncryption,
    },
    tags: Object.fromEntries((tags.TagSet ?? []).map((t) => [t.Key!, t.Value!])),
  };
}

/** Non-ASCII metadata goes over HTTP the way S3 itself returns it (RFC 2047, double-encoded). */
function encodeNonAscii(metadata: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(metadata).map(([k, v]) => [k, /^[\x20-\x7e]*$/.test(v) ? v : `=?UTF-8?B?${Buffer.from(Buffer.from(v, 'utf8').toString('latin1'), 'utf8').toString('base64')}?=`]),
  );
}

async function versionsOf(s3: S3Client, bucket: string, key: string): Promise<string[]> {
  const out = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  return (out.Versions ?? []).filter((v) => v.Key === key).map((v) => v.VersionId!);
}

function tomorrow(): Date {
  return new Date(Date.now() + 24 * 3600 * 1000);
}
