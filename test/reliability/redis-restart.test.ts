import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { CampaignStore } from '../../src/campaign/store.js';
import type { SeededObject } from '../../scripts/seed/seed.js';
import { strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertEndsClean, openCampaignSuite, seedPerMode, startPerMode, type PerMode } from '../helpers/campaign.js';
import { WorkerFleet } from '../helpers/fleet.js';
import { OwnRedis } from '../helpers/own-redis.js';

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
  let buckets: PerMode<string>;
  let seeded: PerMode<SeededObject[]>;

  before(async () => {
    redis = await OwnRedis.start();
    ({ stack, store, oldKey, newKey } = await openCampaignSuite({ ...strictS3(), redisUrl: redis.url }));
    ({ buckets, seeded } = await seedPerMode(stack, () => ({
      count: PER_MODE, kmsKeyId: oldKey.keyId, sizes: [10, 5000, 200_000, 1, 70_000, 17 * MiB, 3, 900, 40_000, 2_000_000],
      objectsPerDataKey: 4, instructionFileEvery: 9, concurrency: 8,
    })));
  });
  after(async () => {
    await stack.close();
    await redis.close();
  });

  test('both campaigns complete; every object has one outcome and decrypts to its original bytes', { timeout: 20 * 60_000 }, async () => {
    const fleet = new WorkerFleet({ config: stack.config });
    try {
      const ids = await startPerMode(stack.config, buckets, newKey.keyId, 10);
      fleet.start();
      fleet.start();
      const done = async () => (await store.status(ids.rewrap)).done + (await store.status(ids.rekey)).done;
      for (const [share, how, downMs] of [[0.25, 'clean', 2_000], [0.6, 'crash', 5_000]] as const) {
        while ((await done()) < share * 2 * PER_MODE) await sleep(100);
        await redis.restart(how, downMs);
      }
      for (const mode of ['rewrap', 'rekey'] as const) {
        const final = await assertEndsClean(stack, store, { mode, id: ids[mode], bucket: buckets[mode], seeded: seeded[mode], newKeyArn: newKey.arn, timeoutMs: 10 * 60_000 });
        process.stdout.write(`# redis-restart-figures ${JSON.stringify({ mode, objects: PER_MODE, restarts: redis.restarts, rotated: final.rotated, byReason: final.byReason })}\n`);
      }
      assert.equal(redis.restarts, 2);
    } finally {
      await fleet.stopAll();
    }
  });
});
