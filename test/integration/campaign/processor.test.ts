import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { makeS3Client } from '../../../src/config/clients.js';
import { processBatch } from '../../../src/campaign/processor.js';
import { makeQueue, type BatchJob } from '../../../src/campaign/queue.js';
import type { CampaignSpec } from '../../../src/campaign/spec.js';
import { CampaignStore } from '../../../src/campaign/store.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../../helpers/stack.js';
import { putSealed, seal } from '../../reliability/support/sealed.js';
import { s3KeyOf, s3Operation } from '../../reliability/support/s3-ops.js';
import { FaultProxy } from '../kms/fault-proxy.js';

const OBJECTS = ['a', 'b', 'c', 'slow'];

/**
 * A worker killed mid-batch must not take the facts of the objects it already finished with it: each
 * final outcome is in Redis as soon as its object settles, before the batch ends.
 */
describe('processBatch records each outcome as its object settles', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let proxy: FaultProxy;
  const pool = new CipherPool({ threads: 1 });

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  });
  after(async () => {
    await pool.close();
    await proxy.close();
    await stack.close();
  });

  test('while the last object of a rekey batch is held, the others already have their outcomes', async () => {
    const bucket = await freshBucket(stack.s3);
    for (const key of OBJECTS) {
      await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(2000), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: false }));
    }
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    const spec: CampaignSpec = {
      name: 'per-object outcomes',
      mode: 'rekey',
      targetKey: newKey.keyId,
      targetKeyArn: newKey.arn,
      sourceKeyArns: [],
      targetFormat: 'same',
      priority: 'incident',
      sources: [{ kind: 'listing', bucket, prefix: '' }],
      kmsRequestsPerSecond: 1000,
      batchSize: OBJECTS.length,
    };
    const id = await store.create(spec);
    assert.equal(await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: OBJECTS.length }), 'advanced');
    await store.completePlan(id);

    const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
    const queue = makeQueue(stack.config, stack.redis);
    const kms = new KmsBatcher({
      kms: stack.kms,
      limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: id, ratePerSecond: 1000 }),
    });
    const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
    const rekeyer = new Rekeyer({ s3: proxied, kms, pool, objectConcurrency: OBJECTS.length }, target);
    proxy.inject({ fault: { kind: 'hold' }, match: (r) => s3Operation('PutObject')(r) && s3KeyOf(r.path) === 'slow', times: 1 });
    const job: BatchJob = { c: id, b: bucket, k: OBJECTS };

    try {
      const batch = processBatch({ s3: proxied, store, queue, rotatorFor: () => rekeyer }, job);
      const held = await proxy.nextHeld(30_000);
      const recordedWhileHeld = await Promise.all(OBJECTS.map((key) => waitForOutcome(store, id, { bucket, key }, key !== 'slow')));
      assert.deepEqual(recordedWhileHeld, [true, true, true, false], 'finished objects are recorded before the batch ends');
      const mid = await store.status(id);
      assert.deepEqual([mid.done, mid.rotated, mid.state], [3, 3, 'running']);

      proxy.release(held, 'forward');
      assert.deepEqual(await batch, { kind: 'done', recorded: OBJECTS.length, retried: 0 });
      const end = await store.status(id);
      assert.deepEqual([end.done, end.rotated, end.state], [OBJECTS.length, OBJECTS.length, 'done']);
    } finally {
      proxied.destroy();
      await queue.close();
    }
  });
});

/** Polls briefly for an outcome the test expects; one it does not expect gets a short look only. */
async function waitForOutcome(store: CampaignStore, id: string, ref: { bucket: string; key: string }, expected: boolean): Promise<boolean> {
  const deadline = Date.now() + (expected ? 20_000 : 500);
  for (;;) {
    if (await store.hasOutcome(id, ref)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
