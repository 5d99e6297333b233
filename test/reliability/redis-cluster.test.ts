import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Cluster } from 'ioredis';
import { QUEUE_NAME, queuePrefix } from '../../src/campaign/queue.js';
import type { SeededObject } from '../../scripts/seed/seed.js';
import { campaignSpec } from '../helpers/spec.js';
import { redisCluster, strictS3 } from '../helpers/stack.js';
import { assertEndsClean, openCampaignSuite, type CampaignSuite, seedPerMode, startCampaign, type Mode, type PerMode } from '../helpers/campaign.js';
import { ClusterMaster } from '../helpers/cluster-master.js';
import { WorkerFleet } from '../helpers/fleet.js';

const LONG = process.env.REKEY_LONG_TESTS === '1';
const PER_MODE = LONG ? 400 : 60;
/** Paces the campaigns (KMS calls per second), so the restarts fall in the middle of them. */
const KMS_RATE = LONG ? 40 : 8;
/** What a worker logs when it replaced a queue worker whose fetching wedged (src/worker/watched-worker.ts). */
const REPLACED = 'a queue worker took no job while jobs waited';

/**
 * The campaigns run with rekey configured for the stack's 3-master Redis Cluster. The master holding
 * the rekey campaign's slot is killed (SIGKILL) and restarted, then the master holding the queues'
 * slot, with an outage longer than the cluster's node timeout (the cluster marks it failed; the other
 * masters keep serving their slots) and than the job locks. The failure model is a master that comes
 * back with every write it acknowledged (appendfsync always; MemoryDB's durable log): the campaign
 * slot and the queue slot may live on different masters, and a master that lost acknowledged writes
 * would leave them disagreeing.
 */
describe('Redis Cluster masters restart in the middle of a rewrap and a rekey campaign', () => {
  let run: CampaignSuite & { buckets: PerMode<string>; seeded: PerMode<SeededObject[]> };

  before(async () => {
    const suite = await openCampaignSuite({ ...strictS3(), ...redisCluster() });
    run = {
      ...suite,
      ...(await seedPerMode(suite.stack, () => ({
        count: PER_MODE, kmsKeyId: suite.oldKey.keyId, sizes: [10, 5000, 200_000, 1, 70_000, 3, 900, 40_000],
        objectsPerDataKey: 1, instructionFileEvery: 9, concurrency: 8,
      }))),
    };
  });
  after(() => run.stack.close());

  test('a command for the slots of a master that is down waits for it, however many redirections that takes', async () => {
    const { stack, store } = run;
    const id = await store.create(campaignSpec([]));
    const master = await ClusterMaster.serving(stack.redis as Cluster, `{${id}}`);
    await master.kill();
    const status = store.status(id);
    // ioredis gives up after 16 redirections, about 2 s of them.
    await sleep(4_000);
    await master.start();
    assert.equal((await status).state, 'planning');
  });

  test('both campaigns complete with exact counts; every object has one outcome and decrypts to its original bytes', { timeout: 15 * 60_000 }, async () => {
    const { stack, store, newKey, buckets, seeded } = run;
    assert.ok(stack.redis instanceof Cluster);
    const fleet = new WorkerFleet({ config: stack.config });
    try {
      const start = (mode: Mode) => startCampaign(stack.config, { bucket: buckets[mode], mode, targetKey: newKey.keyId, batchSize: 5, extra: ['--kms-rate', String(KMS_RATE)] });
      const ids = { rewrap: (await start('rewrap')).id, rekey: (await start('rekey')).id };
      // A campaign's keys carry the hash tag {id}; the queues' keys their prefix's.
      const campaignMaster = await ClusterMaster.serving(stack.redis, `{${ids.rekey}}`);
      const queueMaster = await ClusterMaster.serving(stack.redis, `${queuePrefix(stack.config)}:${QUEUE_NAME}`);
      fleet.start();
      fleet.start();
      const done = async () => (await store.status(ids.rewrap)).done + (await store.status(ids.rekey)).done;
      const doneAtRestart: number[] = [];
      for (const [share, master, downMs] of [[0.25, campaignMaster, 2_000], [0.6, queueMaster, 7_000]] as const) {
        while ((await done()) < share * 2 * PER_MODE) await sleep(100);
        doneAtRestart.push(await done());
        await master.restart(downMs);
      }
      assert.ok(doneAtRestart.every((n) => n < 2 * PER_MODE), `both restarts fell mid-campaign: ${doneAtRestart.join(', ')} of ${2 * PER_MODE}`);
      for (const mode of ['rewrap', 'rekey'] as const) {
        const final = await assertEndsClean(stack, store, { mode, id: ids[mode], bucket: buckets[mode], seeded: seeded[mode], newKeyArn: newKey.arn, timeoutMs: 10 * 60_000 });
        process.stdout.write(
          `# redis-cluster-figures ${JSON.stringify({ mode, objects: PER_MODE, restarted: [campaignMaster.port, queueMaster.port], doneAtRestart, rotated: final.rotated, byReason: final.byReason, queueWorkersReplaced: fleet.output().split(REPLACED).length - 1 })}\n`,
        );
      }
      assert.equal(campaignMaster.restarts + queueMaster.restarts, 2);
    } catch (err) {
      // What the workers said is the only account of a campaign that did not end.
      process.stdout.write(fleet.output().split('\n').filter(Boolean).slice(-200).map((line) => `# worker: ${line}\n`).join(''));
      throw err;
    } finally {
      await fleet.stopAll();
    }
  });
});
