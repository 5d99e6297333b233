import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../src/config/clients.js';
import { FaultProxy } from '../helpers/kms-fault-proxy.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../helpers/stack.js';
import { decryptObject } from '../helpers/verify.js';
import { rawObject } from '../helpers/campaign.js';
import { sealLegacyCbc } from '../helpers/legacy-cbc.js';
import { Rotators, label } from '../helpers/rotators.js';
import { s3Operation } from '../helpers/s3-ops.js';
import { putSealed, seal } from '../helpers/sealed.js';

/**
 * Issue 12, point 1: legacy AES/CBC content has no authentication, so a rekey that gave it a GCM tag
 * would certify whatever it decrypted to. rekey re-encrypts it only with the campaign's opt-in, and
 * then holds the body streamed to HEAD's Content-Length and to the recorded plaintext length; rewrap,
 * which never touches the body, needs no opt-in. Outcomes say whether the source was authenticated.
 */
describe('legacy CBC content is re-encrypted only with --allow-unauthenticated-source', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let rotators: Rotators;
  let proxy: FaultProxy;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    rotators = new Rotators(stack, newKey);
    proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  });
  after(async () => {
    await proxy.close();
    await rotators.close();
    await stack.close();
  });

  const putCbc = async (bucket: string, key: string, plaintext: Buffer, recordLength = false) => {
    const sealed = await sealLegacyCbc(stack.kms, oldKey.keyId, plaintext, { recordLength });
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: sealed.ciphertext, Metadata: sealed.metadata }));
    return sealed;
  };

  test('without the opt-in, rekey skips it as unauthenticated-source and leaves it byte-identical; rewrap moves it', async () => {
    const bucket = await freshBucket(stack.s3);
    await putCbc(bucket, 'cbc', randomBytes(4000));
    const before = await rawObject(stack.s3, bucket, 'cbc');
    const [skipped] = await rotators.rotate('rekey', stack.s3, [{ bucket, key: 'cbc' }]);
    assert.equal(label(skipped!), 'skipped:unauthenticated-source');
    assert.equal(skipped!.retryable, false);
    assert.equal(skipped!.sourceAuthenticated, false);
    assert.equal(skipped!.oldKeyId, undefined, 'no data key was unwrapped for it');
    assert.match(skipped!.message, /--allow-unauthenticated-source/);
    assert.deepEqual(await rawObject(stack.s3, bucket, 'cbc'), before);

    const moved = await rotators.rotateOne('rewrap', stack.s3, bucket, 'cbc');
    assert.equal(label(moved), 'rotated', moved.message);
    assert.equal((await decryptObject(stack, bucket, 'cbc')).keyId, newKey.arn);
  });

  test('with the opt-in, rekey turns it into V2 GCM and says the source was not authenticated; a GCM source says it was', async () => {
    const bucket = await freshBucket(stack.s3);
    const cbc = await putCbc(bucket, 'cbc', randomBytes(70_000));
    const gcm = await seal(stack.kms, randomBytes(500), { kmsKeyId: oldKey.keyId, format: 'v2' });
    await putSealed(stack.s3, bucket, 'gcm', gcm);
    const outcomes = await rotators.rotate('rekey', stack.s3, [{ bucket, key: 'cbc' }, { bucket, key: 'gcm' }], { allowUnauthenticatedSource: true });
    assert.deepEqual(outcomes.map(label), ['rotated', 'rotated'], outcomes.map((o) => o.message).join('; '));
    assert.deepEqual(outcomes.map((o) => o.sourceAuthenticated), [false, true]);
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cbc' }));
    assert.equal(head.Metadata?.['x-amz-cek-alg'], 'AES/GCM/NoPadding');
    const back = await decryptObject(stack, bucket, 'cbc');
    assert.deepEqual([back.sha256, back.keyId], [cbc.plaintextSha256, newKey.arn]);
  });

  for (const recordLength of [false, true]) {
    test(`with the opt-in, a body that ends two blocks early and cleanly fails as truncated and nothing is written (${recordLength ? 'with' : 'without'} a recorded length)`, async () => {
      const bucket = await freshBucket(stack.s3);
      // 6,000 bytes are 375 blocks and a block of padding. Cut two blocks: CBC decrypts the last
      // block left to the plaintext's block 374, which ends in 0x01 here, a valid padding byte.
      const plaintext = randomBytes(6000);
      const keep = 6000 + 16 - 32;
      plaintext[keep - 1] = 0x01;
      await putCbc(bucket, 'cut', plaintext, recordLength);
      const before = await rawObject(stack.s3, bucket, 'cut');
      // Every read of the body is cut, the one that streams it included.
      proxy.inject({ fault: { kind: 'short-body', keep }, match: s3Operation('GetObject') });
      const viaProxy = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
      try {
        const [outcome] = await rotators.rotate('rekey', viaProxy, [{ bucket, key: 'cut' }], { allowUnauthenticatedSource: true });
        assert.equal(label(outcome!), 'failed:truncated', outcome!.message);
      } finally {
        viaProxy.destroy();
        proxy.clearFaults();
      }
      assert.deepEqual(await rawObject(stack.s3, bucket, 'cut'), before, 'the object is byte-identical');
    });
  }
});
