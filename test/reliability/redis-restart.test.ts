import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { CampaignStore } from '../../src/campaign/store.js';
import { seedObjects, type SeededObject } from '../../scripts/seed/seed.js';
import { freshBucket, freshKmsKey, openStack, strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertAllDecrypt, assertOneOutcomeEach, openUploads, startCampaign, waitForCampaign } from './support/campaign.js';
import { WorkerFleet } from './support/fleet.js';
import { OwnRedis } from './support/own-redis.js';

const LONG = process.env.REKEY_LONG_TESTS === '1';
const PER_MODE = LONG ? 800 : 150;
const MiB = 1024 * 1024;

/**
 * Redis goes away twice mid-campaign: a clean shutdown, then a crash (SIGKILL; the AOF loses what was
 * not yet fsynced) with an outage longer than the job locks, so jobs are taken over while their
 * first worker may still be on them.
 */
describe('Redis restarts in the middle of a rewrap and a rekey campaign', () => {
  let redis: OwnRedis;
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;
  const buckets = { rewrap: '', rekey: '' };
  const seeded = { rewrap: [] as SeededObject[], rekey: [] as SeededObject[] };

  before(async () => {
    redis = await OwnRedis.start();
    stack = openStack({ ...strictS3(), redisUrl: redis.url });
    store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    oldKey = await freshKmsKey(stack.kms, 'old');
    newKey = await freshKmsKey(stack.kms, 'new');
    for (const mode of ['rewrap', 'rekey'] as const) {
      buckets[mode] = await freshBucket(stack.s3);
      seeded[mode] = await seedObjects(stack.s3, stack.kms, {
        bucket: buckets[mode], count: PER_MODE, kmsKeyId: oldKey.keyId, sizes: [10, 5000, 200_000, 1, 70_000, 17 * MiB, 3, 900, 40_000, 2_000_000],
        objectsPerDataKey: 4, instructionFileEvery: 9, concurrency: 8,
      });
    }
  });
  after(async () => {
    await stack.close();
    await redis.close();
  });

  test('both campaigns complete; every object has one outcome and decrypts to its original bytes', { timeout: 20 * 60_000 }, async () => {
    const fleet = new WorkerFleet({ config: stack.config });
    try {
      const ids = {
        rewrap: (await startCampaign(stack.config, { bucket: buckets.rewrap, mode: 'rewrap', targetKey: newKey.keyId, batchSize: 10 })).id,
        rekey: (await startCampaign(stack.config, { bucket: buckets.rekey, mode: 'rekey', targetKey: newKey.keyId, batchSize: 10 })).id,
      };
      fleet.start();
      fleet.start();
      const done = async () => (await store.status(ids.rewrap)).done + (await store.status(ids.rekey)).done;
      for (const [share, how, downMs] of [[0.25, 'clean', 2_000], [0.6, 'crash', 5_000]] as const) {
        while ((await done()) < share * 2 * PER_MODE) await sleep(100);
        await redis.restart(how, downMs);
      }
      for (const mode of ['rewrap', 'rekey'] as const) {
        const final = await waitForCampaign(store, ids[mode], { timeoutMs: 10 * 60_000 });
        const outcomes = await assertOneOutcomeEach(store, ids[mode], buckets[mode], seeded[mode].map((o) => o.key));
        const odd = [...outcomes.values()].filter((o) => o.outcome !== 'rotated' && o.reason !== 'already-rotated');
        assert.deepEqual(odd.map((o) => `${o.ref.key} ${o.outcome}:${o.reason} ${o.message}`), [], `${mode}: ${JSON.stringify(final.byReason)}`);
        assert.deepEqual(await openUploads(stack.s3, buckets[mode]), [], `${mode}: no multipart upload is left open`);
        assert.deepEqual([...(await assertAllDecrypt(stack, buckets[mode], seeded[mode])).keys()], [newKey.arn]);
        process.stdout.write(`# redis-restart-figures ${JSON.stringify({ mode, objects: PER_MODE, restarts: redis.restarts, rotated: final.rotated, byReason: final.byReason })}\n`);
      }
      assert.equal(redis.restarts, 2);
    } finally {
      await fleet.stopAll();
    }
  });
});
