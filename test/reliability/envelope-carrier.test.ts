import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Config } from '../../src/config/config.js';
import { replaceMetadata } from '../../src/s3/conditional-writes.js';
import { headObject } from '../../src/s3/snapshot.js';
import { s3ecGet, sha256 } from '../helpers/s3ec.js';
import { freshBucket, openStackWithKeys, strictS3, testConfig, type TestKey, type TestStack } from '../helpers/stack.js';
import { Rotators, label } from '../helpers/rotators.js';
import { putSealed, seal } from '../helpers/sealed.js';

/** User metadata of about `bytes` bytes (keys and values), the kind a large envelope no longer fits beside. */
function userMetadata(bytes: number): Record<string, string> {
  return { owner: 'team-a', notes: 'n'.repeat(bytes - 'owner'.length - 'team-a'.length - 'notes'.length) };
}

const bodyOf = async (s3: S3Client, bucket: string, key: string): Promise<Buffer> =>
  Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());

/**
 * Issue 12, point 2: S3 refuses user metadata past 2 KB (versitygw enforces it as S3 does). rekey puts
 * the new envelope in object metadata when it fits and in an instruction file when it would not; a
 * refusal is the typed, final `failed:metadata-too-large`, never a transient `s3-error`.
 */
describe('the envelope goes where the write fits S3’s 2 KB user-metadata limit', () => {
  let stack: TestStack;
  let strict: Config;
  let oldKey: TestKey;
  let newKey: TestKey;
  let rotators: Rotators;

  before(async () => {
    strict = testConfig(strictS3());
    ({ stack, oldKey, newKey } = await openStackWithKeys(strictS3()));
    rotators = new Rotators(stack, newKey);
  });
  after(async () => {
    await rotators.close();
    await stack.close();
  });

  test('an instruction-file object beside 1.9 KB of user metadata is rekeyed into a new instruction file the real client reads', async () => {
    const bucket = await freshBucket(stack.s3);
    const plaintext = randomBytes(5000);
    const context = { tenant: 'acme', purpose: 'x'.repeat(200) };
    for (const format of ['v2', 'v3'] as const) {
      const sealed = await seal(stack.kms, plaintext, { kmsKeyId: oldKey.keyId, format, instructionFile: true, context });
      // V3 keeps c/d/i on the object: its user metadata leaves room for them.
      await putSealed(stack.s3, bucket, format, sealed, { Metadata: userMetadata(format === 'v3' ? 1800 : 1900) });
      const before = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: format }));

      const outcome = await rotators.rotateOne('rekey', stack.s3, bucket, format);
      assert.equal(label(outcome), 'rotated', outcome.message);
      assert.match(outcome.message, /instruction file/);
      const after = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: format }));
      assert.equal(after.Metadata?.notes, before.Metadata?.notes, 'the user metadata is kept');
      assert.notEqual(after.ETag, before.ETag, 'the body was rewritten');
      const file = JSON.parse((await bodyOf(stack.s3, bucket, `${format}.instruction`)).toString()) as Record<string, string>;
      assert.ok(file['x-amz-key-v2'] ?? file['x-amz-3'], 'the instruction file holds the new wrapped key');
      const back = await s3ecGet(strict, { bucket, key: format, context }, newKey.keyId);
      assert.equal(sha256(back), sha256(plaintext), `${format} reads back under the new key with the real client`);
    }
  });

  test('an object whose own metadata leaves no room even for V3’s object keys fails as metadata-too-large, final, and is untouched', async () => {
    const bucket = await freshBucket(stack.s3);
    const sealed = await seal(stack.kms, randomBytes(100), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true });
    await putSealed(stack.s3, bucket, 'full', sealed, { Metadata: userMetadata(2040) });
    const before = await headObject(stack.s3, bucket, 'full');
    const [outcome] = await rotators.rotate('rekey', stack.s3, [{ bucket, key: 'full' }], { targetFormat: 'v3' });
    assert.equal(label(outcome!), 'failed:metadata-too-large', outcome!.message);
    assert.equal(outcome!.retryable, false, 'a size refusal is never retried');
    assert.equal((await headObject(stack.s3, bucket, 'full')).etag, before.etag);
  });

  test('S3’s own MetadataTooLarge refusal is the typed metadata-too-large, not a retryable s3-error', async () => {
    const bucket = await freshBucket(stack.s3);
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' }));
    const snapshot = await headObject(stack.s3, bucket, 'k');
    await assert.rejects(replaceMetadata(stack.s3, snapshot, { big: 'b'.repeat(2100) }), (err: { reason?: string }) => err.reason === 'metadata-too-large');
  });
});

/**
 * Issue 12, point 6: an instruction file rewritten by rewrap (or by a rekey that keeps one) keeps
 * the file's tags, SSE settings and storage class. moto stores all three.
 */
describe('instruction-file writes keep the file’s tags, SSE settings and storage class', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let rotators: Rotators;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    rotators = new Rotators(stack, newKey);
  });
  after(async () => {
    await rotators.close();
    await stack.close();
  });

  const fileState = async (s3: S3Client, bucket: string, key: string) => {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key }));
    return { etag: head.ETag, sse: head.ServerSideEncryption, storageClass: head.StorageClass, contentType: head.ContentType, metadata: head.Metadata, tags: tags.TagSet };
  };

  for (const mode of ['rewrap', 'rekey'] as const) {
    test(`${mode}: the rewritten instruction file keeps them`, async () => {
      const bucket = await freshBucket(stack.s3);
      const sealed = await seal(stack.kms, randomBytes(300), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true });
      // rekey writes an instruction file only when metadata has no room.
      await putSealed(stack.s3, bucket, 'o', sealed, mode === 'rekey' ? { Metadata: userMetadata(1900) } : {});
      const fileKey = 'o.instruction';
      await stack.s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: fileKey,
          Body: sealed.instructionFile,
          ContentType: 'application/json',
          Metadata: { 'x-amz-crypto-instr-file': '', keep: 'me' },
          ServerSideEncryption: 'AES256',
          StorageClass: 'STANDARD_IA',
          Tagging: 'class=secret&team=a',
        }),
      );
      const before = await fileState(stack.s3, bucket, fileKey);
      const outcome = await rotators.rotateOne(mode, stack.s3, bucket, 'o');
      assert.equal(label(outcome), 'rotated', outcome.message);
      const after = await fileState(stack.s3, bucket, fileKey);
      assert.notEqual(after.etag, before.etag, 'the file was rewritten');
      assert.deepEqual({ ...after, etag: undefined }, { ...before, etag: undefined });
    });
  }
});
