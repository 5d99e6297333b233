import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { EncryptCommand } from '@aws-sdk/client-kms';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { s3ecGet, s3ecPut, sha256, type S3ecObject } from '../../helpers/s3ec.js';
import { freshBucket, freshKmsKey, openStack, type TestKey, type TestStack } from '../../helpers/stack.js';

interface Vector {
  id: string;
  plaintext_data_key_b64?: string;
  metadata: Record<string, string>;
  ciphertext_hex: string;
  plaintext_hex: string;
}

const vectors = (JSON.parse(readFileSync(new URL('../../fixtures/vectors/s3ec_v2_content_kats.json', import.meta.url), 'utf8')) as { vectors: Vector[] }).vectors;

describe('rekey: stream re-encryption under a fresh data key', () => {
  let stack: TestStack;
  let bucket: string;
  let oldKey: TestKey;
  let newKey: TestKey;
  let pool: CipherPool;
  let kms: KmsBatcher;

  const rekeyer = (targetFormat: 'same' | 'v2' | 'v3' = 'same', allowUnauthenticatedSource = false) =>
    new Rekeyer(
      { s3: stack.s3, kms, pool, upload: { partBytes: 5 * 1024 * 1024 } },
      rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat, sourceKeyArns: [], allowUnauthenticatedSource }),
    );

  before(async () => {
    stack = openStack();
    bucket = await freshBucket(stack.s3);
    oldKey = await freshKmsKey(stack.kms, 'old');
    newKey = await freshKmsKey(stack.kms, 'new');
    pool = new CipherPool({ threads: 1 });
    kms = new KmsBatcher({
      kms: stack.kms,
      limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'rekey-test', ratePerSecond: 500 }),
    });
  });
  after(async () => {
    await pool.close();
    await stack.close();
  });

  test('objects of the real S3EC client are re-encrypted, read back by it under the new key, and skipped the second time', async () => {
    const cases: (S3ecObject & { body: Buffer })[] = [
      { bucket, key: 'v2-meta', kmsKeyId: oldKey.keyId, format: 'v2', body: randomBytes(1000), metadata: { owner: 'a' }, contentType: 'text/csv' },
      { bucket, key: 'v3-meta-ctx', kmsKeyId: oldKey.keyId, format: 'v3', context: { tenant: 'acme' }, body: randomBytes(70_001) },
      { bucket, key: 'v2-instr-ctx', kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true, context: { t: 'x' }, body: randomBytes(5) },
      { bucket, key: 'v3-instr', kmsKeyId: oldKey.keyId, format: 'v3', instructionFile: true, body: Buffer.alloc(0) },
      { bucket, key: 'v2-multipart', kmsKeyId: oldKey.keyId, format: 'v2', multipart: true, body: randomBytes(12 * 1024 * 1024 + 7) },
    ];
    for (const c of cases) await s3ecPut(stack.config, c, c.body);
    const outcomes = await rekeyer().rotate(cases.map((c) => ({ bucket, key: c.key })), noJournal);
    for (const o of outcomes) {
      assert.equal(o.outcome, 'rotated', `${o.ref.key}: ${o.reason} ${o.message}`);
      assert.equal(o.oldKeyId, oldKey.arn);
      assert.equal(o.newKeyId, newKey.arn);
    }
    for (const c of cases) {
      assert.equal(sha256(await s3ecGet(stack.config, c, newKey.keyId)), sha256(c.body), `${c.key} reads back`);
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: c.key }));
      assert.ok(head.Metadata?.['x-amz-c'] ?? head.Metadata?.['x-amz-cek-alg'], `${c.key} carries its envelope in metadata`);
      if (c.metadata) assert.equal(head.Metadata?.owner, 'a');
      if (c.contentType) assert.equal(head.ContentType, 'text/csv');
    }
    await assert.rejects(stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'v2-instr-ctx.instruction' })), 'the stale instruction file is gone');

    const again = await rekeyer().rotate(cases.map((c) => ({ bucket, key: c.key })), noJournal);
    assert.deepEqual(new Set(again.map((o) => `${o.outcome}:${o.reason}`)), new Set(['skipped:already-rotated']));
  });

  test('--target-format v3 migrates a V2 object to V3', async () => {
    const c: S3ecObject = { bucket, key: 'to-v3', kmsKeyId: oldKey.keyId, format: 'v2', context: { a: 'b' } };
    const body = randomBytes(3000);
    await s3ecPut(stack.config, c, body);
    const [o] = await rekeyer('v3').rotate([{ bucket, key: 'to-v3' }], noJournal);
    assert.equal(o!.outcome, 'rotated');
    assert.deepEqual([o!.format, o!.newFormat], ['v2', 'v3']);
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'to-v3' }));
    assert.equal(head.Metadata?.['x-amz-c'], '115');
    assert.equal(sha256(await s3ecGet(stack.config, c, newKey.keyId)), sha256(body));
  });

  test('a legacy CBC object with the kms wrap (known-answer vector) becomes V2 GCM that the real client reads, with the opt-in', async () => {
    const v = vectors.find((x) => x.id === 'go-v2-getobject-kms-cbc-legacy')!;
    const matdesc = { kms_cmk_id: oldKey.keyId };
    const wrapped = await stack.kms.send(
      new EncryptCommand({ KeyId: oldKey.keyId, Plaintext: Buffer.from(v.plaintext_data_key_b64!, 'base64'), EncryptionContext: matdesc }),
    );
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'legacy-cbc',
        Body: Buffer.from(v.ciphertext_hex, 'hex'),
        Metadata: {
          ...v.metadata,
          'x-amz-key-v2': Buffer.from(wrapped.CiphertextBlob!).toString('base64'),
          'x-amz-matdesc': JSON.stringify(matdesc),
        },
      }),
    );
    const [o] = await rekeyer('same', true).rotate([{ bucket, key: 'legacy-cbc' }], noJournal);
    assert.equal(o!.outcome, 'rotated', `${o!.reason} ${o!.message}`);
    assert.equal(o!.sourceAuthenticated, false);
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'legacy-cbc' }));
    assert.equal(head.Metadata?.['x-amz-cek-alg'], 'AES/GCM/NoPadding');
    assert.equal(head.Metadata?.['x-amz-wrap-alg'], 'kms+context');
    const back = await s3ecGet(stack.config, { bucket, key: 'legacy-cbc' }, newKey.keyId);
    assert.equal(back.toString('hex'), v.plaintext_hex);
  });

  test('a tampered or truncated body fails, the upload is aborted and the object stays byte-identical', async () => {
    for (const [key, damage] of [
      ['tampered', (b: Buffer) => { b[b.length - 3]! ^= 1; return b; }],
      ['truncated', (b: Buffer) => b.subarray(0, b.length - 20)],
      ['tampered-big', (b: Buffer) => { b[100]! ^= 0x80; return b; }],
    ] as const) {
      const size = key === 'tampered-big' ? 11 * 1024 * 1024 : 50_000;
      const c: S3ecObject = { bucket, key, kmsKeyId: oldKey.keyId, format: 'v2' };
      await s3ecPut(stack.config, c, randomBytes(size));
      const got = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      const damaged = damage(Buffer.from(await got.Body!.transformToByteArray()));
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: damaged, Metadata: head.Metadata }));
      const [o] = await rekeyer().rotate([{ bucket, key }], noJournal);
      assert.equal(o!.outcome, 'failed');
      assert.equal(o!.reason, 'tag-mismatch', `${key}: ${o!.message}`);
      const after = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(sha256(await after.Body!.transformToByteArray()), sha256(damaged), `${key} is untouched`);
      const afterHead = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.deepEqual(afterHead.Metadata, head.Metadata);
    }
    const uploads = await stack.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.equal(uploads.Uploads?.length ?? 0, 0, 'no multipart upload is left open');
  });
});
