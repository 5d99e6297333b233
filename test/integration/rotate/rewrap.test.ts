import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import type { ObjectRef } from '../../../src/rotate/outcome.js';
import { Rewrapper } from '../../../src/rotate/rewrap.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { s3ecGet, s3ecPut, sha256, type S3ecObject } from '../../helpers/s3ec.js';
import { freshBucket, freshKmsKey, openStack, type TestKey, type TestStack } from '../../helpers/stack.js';

describe('rewrap of objects written by the AWS S3 Encryption Client for Python', () => {
  let stack: TestStack;
  let bucket: string;
  let oldKey: TestKey;
  let newKey: TestKey;
  let reEncryptCalls = 0;
  let rewrapper: Rewrapper;

  before(async () => {
    stack = openStack();
    bucket = await freshBucket(stack.s3);
    oldKey = await freshKmsKey(stack.kms, 'old');
    newKey = await freshKmsKey(stack.kms, 'new');
    const kms = new KmsBatcher({
      kms: stack.kms,
      limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'rewrap-test', ratePerSecond: 500 }),
      observer: { onCall: (e) => void (e.operation === 'ReEncrypt' && (reEncryptCalls += 1)) },
    });
    rewrapper = new Rewrapper(
      { s3: stack.s3, kms },
      rotationTarget({ mode: 'rewrap', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] }),
    );
  });
  after(() => stack.close());

  test('every format and layout moves to the new key, reads back with the real client, and a second run skips', async () => {
    const cases: (S3ecObject & { body: Buffer })[] = [];
    let n = 0;
    for (const format of ['v2', 'v3'] as const) {
      for (const instructionFile of [false, true]) {
        for (const context of [undefined, { tenant: 'acme', purpose: 'interop' }]) {
          const size = [0, 1, 4096, 100_003][n % 4]!;
          cases.push({
            bucket,
            key: `obj/${format}-${instructionFile ? 'instr' : 'meta'}-${context ? 'ctx' : 'noctx'}`,
            kmsKeyId: oldKey.keyId,
            format,
            instructionFile,
            ...(context ? { context } : {}),
            metadata: { owner: 'team-a' },
            contentType: 'text/plain',
            body: randomBytes(size),
          });
          n += 1;
        }
      }
    }
    for (const c of cases) await s3ecPut(stack.config, c, c.body);
    const refs: ObjectRef[] = cases.map((c) => ({ bucket, key: c.key }));

    reEncryptCalls = 0;
    const outcomes = await rewrapper.rotate(refs, noJournal);
    for (const o of outcomes) assert.equal(o.outcome, 'rotated', `${o.ref.key}: ${o.reason} ${o.message}`);
    assert.equal(reEncryptCalls, cases.length, 'one ReEncrypt per distinct data key');
    for (const o of outcomes) {
      assert.equal(o.oldKeyId, oldKey.arn);
      assert.equal(o.newKeyId, newKey.arn);
      assert.equal(o.bytesRead, 0, 'rewrap never reads the body');
    }

    for (const c of cases) {
      const back = await s3ecGet(stack.config, c, newKey.keyId);
      assert.equal(sha256(back), sha256(c.body), `${c.key} reads back under the new key`);
      await assert.rejects(s3ecGet(stack.config, c, oldKey.keyId), `${c.key} no longer opens with the old key`);
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: c.key }));
      assert.equal(head.Metadata?.owner, 'team-a');
      assert.equal(head.ContentType, 'text/plain');
    }

    const again = await rewrapper.rotate(refs, noJournal);
    for (const o of again) {
      assert.equal(o.outcome, 'skipped');
      assert.equal(o.reason, 'already-rotated');
    }
  });

  test('objects that share one data key cost one ReEncrypt', async () => {
    const first: S3ecObject = { bucket, key: 'shared/0', kmsKeyId: oldKey.keyId, format: 'v2' };
    const body = randomBytes(512);
    await s3ecPut(stack.config, first, body);
    const refs: ObjectRef[] = [{ bucket, key: 'shared/0' }];
    for (let i = 1; i < 25; i++) {
      await stack.s3.send(new CopyObjectCommand({ Bucket: bucket, Key: `shared/${i}`, CopySource: `${bucket}/shared/0` }));
      refs.push({ bucket, key: `shared/${i}` });
    }
    reEncryptCalls = 0;
    const outcomes = await rewrapper.rotate(refs, noJournal);
    assert.deepEqual(new Set(outcomes.map((o) => o.outcome)), new Set(['rotated']));
    assert.equal(reEncryptCalls, 1);
    assert.equal(sha256(await s3ecGet(stack.config, { bucket, key: 'shared/24' }, newKey.keyId)), sha256(body));
  });

  test('bad objects get a reason and are left untouched, and the batch goes on', async () => {
    const good: S3ecObject = { bucket, key: 'mixed/good', kmsKeyId: oldKey.keyId, format: 'v3' };
    await s3ecPut(stack.config, good, randomBytes(100));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'mixed/plain', Body: 'not encrypted' }));
    await stack.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'mixed/split-no-file', Body: 'x', Metadata: { 'x-amz-c': '115', 'x-amz-d': 'AAAA', 'x-amz-i': 'AAAA' } }),
    );
    const wrongContext: S3ecObject = { bucket, key: 'mixed/wrong-ec', kmsKeyId: oldKey.keyId, format: 'v2', context: { a: 'b' } };
    await s3ecPut(stack.config, wrongContext, randomBytes(10));
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'mixed/wrong-ec' }));
    const tampered = { ...head.Metadata, 'x-amz-matdesc': '{"a":"c","aws:x-amz-cek-alg":"AES/GCM/NoPadding"}' };
    await stack.s3.send(
      new CopyObjectCommand({ Bucket: bucket, Key: 'mixed/wrong-ec', CopySource: `${bucket}/mixed/wrong-ec`, MetadataDirective: 'REPLACE', Metadata: tampered }),
    );
    const before = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'mixed/wrong-ec' }));
    const beforeBody = sha256(await before.Body!.transformToByteArray());

    const keys = ['mixed/good', 'mixed/plain', 'mixed/split-no-file', 'mixed/wrong-ec', 'mixed/missing'];
    const outcomes = await rewrapper.rotate(keys.map((key) => ({ bucket, key })), noJournal);
    const byKey = Object.fromEntries(outcomes.map((o) => [o.ref.key, `${o.outcome}:${o.reason ?? ''}`]));
    assert.deepEqual(byKey, {
      'mixed/good': 'rotated:',
      'mixed/plain': 'skipped:not-encrypted',
      'mixed/split-no-file': 'failed:missing-instruction-file',
      'mixed/wrong-ec': 'failed:wrong-key',
      'mixed/missing': 'skipped:gone',
    });
    const after = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'mixed/wrong-ec' }));
    assert.equal(sha256(await after.Body!.transformToByteArray()), beforeBody);
    assert.equal((await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'mixed/wrong-ec' }))).Metadata?.['x-amz-matdesc'], tampered['x-amz-matdesc']);
  });
});
