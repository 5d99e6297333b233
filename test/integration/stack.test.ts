import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DecryptCommand, GenerateDataKeyCommand, ReEncryptCommand } from '@aws-sdk/client-kms';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { makeKmsClient } from '../../src/config/clients.js';
import { freshBucket, freshKmsKey, kmsEndpoints, openStack, uniqueName, type TestStack } from '../helpers/stack.js';

describe('the local stack, through the real clients', () => {
  let stack: TestStack;
  before(() => {
    stack = openStack();
  });
  after(async () => {
    await stack.close();
  });

  test('a BullMQ job makes a round trip through the real Redis', async () => {
    const connection = { url: stack.config.redisUrl, maxRetriesPerRequest: null };
    const name = uniqueName('q');
    const opts = { connection, prefix: stack.config.redisPrefix };
    const queue = new Queue(name, opts);
    const events = new QueueEvents(name, opts);
    const worker = new Worker(name, async (job) => ({ doubled: (job.data as { n: number }).n * 2 }), opts);
    try {
      await events.waitUntilReady();
      const job = await queue.add('double', { n: 21 });
      assert.deepEqual(await job.waitUntilFinished(events, 10_000), { doubled: 42 });
      assert.ok((await stack.redis.keys(`${stack.config.redisPrefix}:${name}:*`)).length > 0);
    } finally {
      await worker.close();
      await events.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  test('an object makes a round trip through moto S3 with @aws-sdk/client-s3', async () => {
    const bucket = await freshBucket(stack.s3);
    const body = Buffer.from('rekey round trip ✓');
    await stack.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'a/b.txt', Body: body, Metadata: { 'x-amz-key-v2': 'abc' } }),
    );
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/b.txt' }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body);
    assert.equal(got.Metadata?.['x-amz-key-v2'], 'abc');
  });

  for (const endpoint of kmsEndpoints()) {
    test(`GenerateDataKey and ReEncrypt through ${endpoint.name} with @aws-sdk/client-kms`, async () => {
      const kms = makeKmsClient({ ...stack.config, kmsEndpoint: endpoint.endpoint });
      try {
        const oldKey = await freshKmsKey(kms);
        const newKey = await freshKmsKey(kms);
        const context = { 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding', team: 'storage' };
        const dk = await kms.send(new GenerateDataKeyCommand({ KeyId: oldKey.keyId, KeySpec: 'AES_256', EncryptionContext: context }));
        assert.equal(dk.Plaintext?.length, 32);
        const moved = await kms.send(
          new ReEncryptCommand({
            CiphertextBlob: dk.CiphertextBlob,
            SourceKeyId: oldKey.keyId,
            SourceEncryptionContext: context,
            DestinationKeyId: newKey.keyId,
            DestinationEncryptionContext: context,
          }),
        );
        assert.equal(moved.KeyId, newKey.arn);
        assert.notDeepEqual(moved.CiphertextBlob, dk.CiphertextBlob);
        const back = await kms.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob, KeyId: newKey.keyId, EncryptionContext: context }));
        assert.deepEqual(back.Plaintext, dk.Plaintext);
        dk.Plaintext?.fill(0);
        back.Plaintext?.fill(0);
      } finally {
        kms.destroy();
      }
    });
  }
});
