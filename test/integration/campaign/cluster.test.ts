import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Cluster } from 'ioredis';
import { planCampaign } from '../../../src/campaign/planner.js';
import { makeQueue, makeVerifyQueue } from '../../../src/campaign/queue.js';
import { ScheduleStore } from '../../../src/campaign/schedule.js';
import { CampaignStore } from '../../../src/campaign/store.js';
import { UploadJournals } from '../../../src/campaign/upload-journals.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { notRotated, rotated } from '../../../src/rotate/outcome.js';
import { loadConfig, type Config } from '../../../src/config/config.js';
import { rekey } from '../../helpers/cli.js';
import { campaignSpec } from '../../helpers/spec.js';
import { freshBucket, openStack, redisCluster, type TestStack } from '../../helpers/stack.js';

/** The master serving a slot, as `host:port`. */
async function masterOf(cluster: Cluster, slot: number): Promise<string> {
  const range = (await cluster.cluster('SLOTS')).find(([from, to]) => from <= slot && slot <= to);
  const master = range?.[2];
  assert.ok(master, `slot ${slot} is served`);
  return `${master[0]}:${master[1]}`;
}

/** Every key of the test's prefix on every master, with its slot: rekey's own and BullMQ's. */
async function keysBySlot(cluster: Cluster, patterns: readonly string[]): Promise<Map<string, number>> {
  const slots = new Map<string, number>();
  for (const node of cluster.nodes('master')) {
    for (const pattern of patterns) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) slots.set(key, (await node.cluster('KEYSLOT', key)) as number);
      } while (cursor !== '0');
    }
  }
  return slots;
}

describe('rekey on a Redis Cluster', () => {
  let stack: TestStack;
  let cluster: Cluster;
  let store: CampaignStore;
  let verifyQueue: ReturnType<typeof makeVerifyQueue>;
  before(() => {
    stack = openStack(redisCluster());
    assert.ok(stack.redis instanceof Cluster, 'REKEY_REDIS_CLUSTER makes a cluster client');
    cluster = stack.redis;
    store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    verifyQueue = makeVerifyQueue(stack.config, stack.redis);
  });
  after(async () => {
    await verifyQueue.close();
    await stack.close();
  });

  test('campaigns spread over slots and masters; each campaign keeps all its keys, scripts and transactions in one slot', async () => {
    // Fixed ids, so the slots they hash to are the same on every run.
    const ids = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
    for (const id of ids) {
      await store.create(campaignSpec([]), id);
      assert.equal(await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: 2 }), 'advanced');
      // Every script of the record path: a batch in flight, its claim and record, then a retry's forgetting.
      const flight = store.inFlight(id, 'batch-1');
      const failed = notRotated({ bucket: 'b', key: 'y' }, 'rewrap', 'tag-mismatch', 'bad tag');
      await flight.intend({ ref: { bucket: 'b', key: 'x' }, mode: 'rewrap', facts: {}, location: 'object', replacedVersionId: undefined, wrappedKeyDigest: 'd', at: Date.now() });
      assert.equal(await flight.settle(rotated({ bucket: 'b', key: 'x' }, 'rewrap', { bytesRead: 1, bytesWritten: 1 })), true);
      assert.equal(await flight.settle(failed), true);
      const rows = await flight.claim();
      assert.equal(rows?.size, 2);
      assert.equal(await store.recordBatch(id, 'batch-1', [...rows!.values()]), 'recorded');
      assert.equal(await store.forgetFailures(id, 'retry-1', [failed]), true);
      const journal = new UploadJournals(stack.redis, stack.config.redisPrefix).of(id);
      await journal.starting({ bucket: 'b', key: 'y', at: Date.now() });
      await journal.started({ bucket: 'b', key: 'y', uploadId: 'u1' });
      assert.equal(await store.transition(id, ['running'], 'paused'), true);
      await store.completePlan(id);
      await new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: id, ratePerSecond: 1000 }).acquire();
      const status = await store.status(id);
      assert.deepEqual({ planned: status.planned, done: status.done, rotated: status.rotated, failed: status.failed }, { planned: 2, done: 1, rotated: 1, failed: 0 });
    }
    assert.deepEqual([...(await store.list())].sort(), [...ids].sort());

    const keys = await keysBySlot(cluster, [`${stack.config.redisPrefix}:campaign:*`]);
    const slotOf = new Map<string, Set<number>>();
    for (const [key, slot] of keys) {
      const id = /\{([^}]+)\}/.exec(key)?.[1];
      assert.ok(id && ids.includes(id), `${key} carries its campaign's hash tag`);
      slotOf.set(id, (slotOf.get(id) ?? new Set()).add(slot));
    }
    assert.ok(keys.size >= ids.length * 5, `every campaign wrote its keys: ${[...keys.keys()].join(', ')}`);
    for (const [id, slots] of slotOf) assert.equal(slots.size, 1, `campaign ${id}: one slot`);
    const slots = [...slotOf.values()].map((s) => [...s][0]!);
    assert.equal(new Set(slots).size, ids.length, 'each campaign in a slot of its own');
    const masters = new Set(await Promise.all(slots.map((slot) => masterOf(cluster, slot))));
    assert.ok(masters.size >= 2, `campaigns on several masters: ${[...masters].join(', ')}`);
  });

  test('BullMQ queues carry the {prefix} hash tag; a plan queues its objects there', async () => {
    const bucket = await freshBucket(stack.s3);
    await Promise.all(Array.from({ length: 25 }, (_, i) => stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `k/${i}`, Body: 'x' }))));
    const queue = makeQueue(stack.config, stack.redis);
    try {
      const id = await store.create(campaignSpec([{ kind: 'listing', bucket, prefix: 'k/' }], { batchSize: 10 }));
      assert.equal(await planCampaign({ s3: stack.s3, store, queue, verifyQueue }, id), 'complete');
      assert.equal((await store.status(id)).planned, 25);
      const counts = await queue.getJobCounts('waiting', 'prioritized');
      assert.equal((counts.waiting ?? 0) + (counts.prioritized ?? 0), 3, '25 objects in batches of 10');
    } finally {
      await queue.close();
    }
    const queueKeys = await keysBySlot(cluster, [`{${stack.config.redisPrefix}}:*`]);
    assert.ok(queueKeys.size > 0, 'the queue wrote its keys under the hash-tagged prefix');
    assert.equal(new Set(queueKeys.values()).size, 1, 'every key of the queues in one slot');
  });

  test('schedules are created, run and removed with their index in a slot of its own', async () => {
    const schedules = new ScheduleStore(stack.redis, stack.config.redisPrefix);
    const schedule = { id: 's-cluster', spec: campaignSpec([]), everyMs: 60_000, minAgeMs: 0, createdAt: Date.now() };
    await schedules.create(schedule);
    await schedules.addRun(schedule.id, { campaignId: 'run-1', firedAt: 1 });
    assert.deepEqual((await schedules.list()).map((s) => s.id), [schedule.id]);
    assert.equal(await schedules.remove(schedule.id), true);
    assert.deepEqual(await schedules.list(), []);
    assert.deepEqual(await schedules.runs(schedule.id), []);
  });

  test('rekey doctor checks every master, and says when REKEY_REDIS_CLUSTER does not match the Redis', async () => {
    const doctor = async (config: Config) => {
      const r = await rekey(config, ['doctor', '--json']);
      return (JSON.parse(r.stdout) as { part: string; ok: boolean; detail: string }[]).find((c) => c.part === 'redis')!;
    };
    const ok = await doctor(stack.config);
    assert.equal(ok.ok, true, ok.detail);
    assert.match(ok.detail, /Redis Cluster of 3 masters, maxmemory-policy noeviction/);
    const unflagged = await doctor({ ...stack.config, redisCluster: false });
    assert.deepEqual(unflagged, { part: 'redis', ok: false, detail: `${stack.config.redisUrl} is a Redis Cluster node: set REKEY_REDIS_CLUSTER=true` });
    const single = await doctor({ ...stack.config, redisUrl: loadConfig().redisUrl });
    assert.equal(single.ok, false);
    assert.match(single.detail, /cluster support disabled/);
  });
});
