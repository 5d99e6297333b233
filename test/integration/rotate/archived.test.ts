import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../../helpers/stack.js';
import { Rotators } from '../../helpers/rotators.js';
import { putSealed, seal } from '../../helpers/sealed.js';

/**
 * Objects a lifecycle rule moved to an archive storage class: S3 answers their GET and CopyObject with
 * 403 InvalidObjectState until they are restored. That is not a permission to grant nor a transient
 * failure: the object is reported `archived`, once, and stays as it was (moto enforces this as S3 does).
 */
describe('archived objects', () => {
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

  for (const mode of ['rekey', 'rewrap'] as const) {
    for (const storageClass of ['GLACIER', 'DEEP_ARCHIVE'] as const) {
      test(`${mode} of a ${storageClass} object: failed:archived, not retried, the object untouched`, async () => {
        const bucket = await freshBucket(stack.s3);
        await putSealed(stack.s3, bucket, 'cold', await seal(stack.kms, randomBytes(2000), { kmsKeyId: oldKey.keyId, format: 'v2' }), { StorageClass: storageClass });
        const before = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cold' }));
        const outcome = await rotators.rotateOne(mode, stack.s3, bucket, 'cold');
        assert.deepEqual([outcome.outcome, outcome.reason, outcome.retryable], ['failed', 'archived', false], outcome.message);
        assert.match(outcome.message, /restore it/);
        const now = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cold' }));
        assert.deepEqual([now.ETag, now.StorageClass], [before.ETag, storageClass]);
      });
    }
  }

  test('rewrap of an archived object whose envelope is in its instruction file rewrites the file only', async () => {
    const bucket = await freshBucket(stack.s3);
    await putSealed(stack.s3, bucket, 'cold', await seal(stack.kms, randomBytes(2000), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true }), { StorageClass: 'GLACIER' });
    const outcome = await rotators.rotateOne('rewrap', stack.s3, bucket, 'cold');
    assert.deepEqual([outcome.outcome, outcome.newKeyId], ['rotated', newKey.arn], outcome.message);
  });
});
