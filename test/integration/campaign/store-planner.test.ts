import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { estimatePlan, planCampaign } from '../../../src/campaign/planner.js';
import { makeQueue, refsOf, type BatchJob } from '../../../src/campaign/queue.js';
import { CampaignStore } from '../../../src/campaign/store.js';
import { notRotated, rotated } from '../../../src/rotate/outcome.js';
import { campaignSpec } from '../../helpers/spec.js';
import { freshBucket, openStack, type TestStack } from '../../helpers/stack.js';

describe('campaign store and planner', () => {
  let stack: TestStack;
  let store: CampaignStore;
  before(() => {
    stack = openStack();
    store = new CampaignStore(stack.redis, stack.config.redisPrefix);
  });
  after(() => stack.close());

  test('each object counts once, by outcome and reason, and the campaign finishes when all are in', async () => {
    const id = await store.create(campaignSpec([]));
    const a = { bucket: 'b', key: 'a' };
    const b = { bucket: 'b', key: 'b' };
    assert.equal(await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: 2 }), 'advanced');
    await store.completePlan(id);
    assert.equal((await store.status(id)).state, 'running');
    assert.equal(await store.record(id, rotated(a, 'rewrap', { bytesRead: 10, bytesWritten: 10 })), true);
    assert.equal(await store.record(id, rotated(a, 'rewrap', { bytesRead: 10, bytesWritten: 10 })), false, 'a second outcome for a is ignored');
    assert.equal(await store.record(id, notRotated(b, 'rewrap', 'tag-mismatch', 'bad tag')), true);
    const status = await store.status(id);
    assert.equal(status.state, 'done');
    assert.deepEqual(
      { planned: status.planned, done: status.done, rotated: status.rotated, failed: status.failed, bytesRead: status.bytesRead },
      { planned: 2, done: 2, rotated: 1, failed: 1, bytesRead: 10 },
    );
    assert.deepEqual(status.byReason, { 'failed:tag-mismatch': 1 });
    const all = [];
    for await (const o of store.outcomes(id)) all.push(o);
    assert.deepEqual(all.map((o) => [o.ref.key, o.outcome]), [['a', 'rotated'], ['b', 'failed']]);

    assert.deepEqual(await store.forgetFailed(id), [b]);
    const after = await store.status(id);
    assert.equal(after.state, 'running');
    assert.equal(after.done, 1);
    assert.equal(after.byReason['failed:tag-mismatch'], 0);
    assert.equal(await store.hasOutcome(id, b), false);
  });

  test('concurrent records of the same objects count each object exactly once', async () => {
    const id = await store.create(campaignSpec([]));
    const refs = Array.from({ length: 200 }, (_, i) => ({ bucket: 'b', key: `k${i}` }));
    const limit = pLimit(32);
    const results = await Promise.all(
      [...refs, ...refs, ...refs].map((ref) => limit(() => store.record(id, rotated(ref, 'rewrap', {})))),
    );
    assert.equal(results.filter(Boolean).length, 200);
    assert.equal((await store.status(id)).done, 200);
  });

  test('a listing is planned into batches of keys, instruction files left out, and a second plan adds nothing', async () => {
    const bucket = await freshBucket(stack.s3);
    const limit = pLimit(16);
    await Promise.all(
      Array.from({ length: 1234 }, (_, i) =>
        limit(() => stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `p/${String(i).padStart(5, '0')}`, Body: 'x' }))),
      ),
    );
    await Promise.all(
      Array.from({ length: 5 }, (_, i) => stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `p/${i}.instruction`, Body: '{}' }))),
    );
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'other/x', Body: 'x' }));

    const queue = makeQueue(stack.config, stack.redis);
    try {
      const id = await store.create(campaignSpec([{ kind: 'listing', bucket, prefix: 'p/' }]));
      await planCampaign({ s3: stack.s3, store, queue }, id);
      const status = await store.status(id);
      assert.equal(status.planned, 1234);
      assert.equal(status.planComplete, true);
      const jobs = await queue.getJobs(['prioritized', 'waiting']);
      const mine = jobs.filter((j) => (j.data as BatchJob).c === id);
      assert.equal(mine.length, 13);
      const keys = mine.flatMap((j) => refsOf(j.data as BatchJob).map((r) => r.key));
      assert.equal(new Set(keys).size, 1234);
      assert.ok(keys.every((k) => k.startsWith('p/') && !k.endsWith('.instruction')));
      assert.ok(mine.every((j) => !JSON.stringify(j.data).includes('Plaintext')));

      await planCampaign({ s3: stack.s3, store, queue }, id);
      assert.equal((await store.status(id)).planned, 1234, 'a finished plan is not planned again');

      const estimate = await estimatePlan(stack.s3, campaignSpec([{ kind: 'listing', bucket, prefix: '' }]), {
        bytesPerSecond: 1e8,
        objectsPerSecond: 100,
      });
      assert.deepEqual({ objects: estimate.objects, bytes: estimate.bytes, kmsCalls: estimate.kmsCalls }, { objects: 1235, bytes: 1235, kmsCalls: 1235 });
      assert.ok(Math.abs(estimate.seconds - 12.35) < 1e-9);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  test('a CSV manifest in S3 is planned with URL-encoded keys and version ids', async () => {
    const bucket = await freshBucket(stack.s3);
    const csv = `${bucket},a%20b.txt\n${bucket},dir/c%2Bd,v123\n\n${bucket},x.instruction\n`;
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifest.csv', Body: csv }));
    const queue = makeQueue(stack.config, stack.redis);
    try {
      const id = await store.create(campaignSpec([{ kind: 'manifest', uri: `s3://${bucket}/manifest.csv` }]));
      await planCampaign({ s3: stack.s3, store, queue }, id);
      assert.equal((await store.status(id)).planned, 2);
      const jobs = (await queue.getJobs(['prioritized', 'waiting'])).filter((j) => (j.data as BatchJob).c === id);
      assert.deepEqual(
        jobs.flatMap((j) => refsOf(j.data as BatchJob)),
        [
          { bucket, key: 'a b.txt' },
          { bucket, key: 'dir/c+d', versionId: 'v123' },
        ],
      );
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
