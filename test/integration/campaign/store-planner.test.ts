import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { estimatePlan, planCampaign } from '../../../src/campaign/planner.js';
import { makeQueue, makeVerifyQueue, refsOf, type BatchJob } from '../../../src/campaign/queue.js';
import { CampaignStore } from '../../../src/campaign/store.js';
import { notRotated, rotated } from '../../../src/rotate/outcome.js';
import { campaignSpec } from '../../helpers/spec.js';
import { freshBucket, openStack, type TestStack } from '../../helpers/stack.js';

describe('campaign store and planner', () => {
  let stack: TestStack;
  let store: CampaignStore;
  let verifyQueue: ReturnType<typeof makeVerifyQueue>;
  before(() => {
    stack = openStack();
    store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    verifyQueue = makeVerifyQueue(stack.config, stack.redis);
  });
  after(async () => {
    await verifyQueue.close();
    await stack.close();
  });

  test('a batch counts once, by outcome and reason; the campaign then awaits its closing verification', async () => {
    const id = await store.create(campaignSpec([]));
    const a = { bucket: 'b', key: 'a' };
    const b = { bucket: 'b', key: 'b' };
    assert.equal(await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: 2 }), 'advanced');
    await store.completePlan(id);
    assert.equal((await store.status(id)).state, 'running');
    const flight = store.inFlight(id, 'batch-1');
    const rowA = rotated(a, 'rewrap', { bytesRead: 10, bytesWritten: 10, oldKeyId: 'arn:old', newKeyId: 'arn:new' });
    assert.equal(await flight.settle(rowA), true);
    assert.equal(await flight.settle(rowA), false, 'a second outcome for a in the batch is ignored');
    assert.equal(await flight.settle(notRotated(b, 'rewrap', 'tag-mismatch', 'bad tag')), true);
    const { rows } = await flight.load();
    assert.equal(await store.recordBatch(id, 'batch-1', [...rows.values()]), 'verify', 'the last batch settles the campaign');
    assert.equal(await store.recordBatch(id, 'batch-1', [...rows.values()]), 'duplicate', 'a batch recorded again counts nothing');
    assert.equal((await flight.load()).rows.size, 0, 'the in-flight rows are gone once recorded');
    const status = await store.status(id);
    assert.equal(status.state, 'verifying');
    assert.equal(status.finishedAt, undefined, 'not finished before its verification');
    assert.deepEqual(
      { planned: status.planned, done: status.done, rotated: status.rotated, failed: status.failed, bytesRead: status.bytesRead },
      { planned: 2, done: 2, rotated: 1, failed: 1, bytesRead: 10 },
    );
    assert.deepEqual(status.byReason, { 'failed:tag-mismatch': 1 });
    assert.deepEqual(await store.sourceKeys(id), ['arn:old']);

    const failed = [...rows.values()].filter((r) => r.outcome === 'failed');
    assert.equal(await store.forgetFailures(id, 'retry-1', failed), true);
    assert.equal(await store.forgetFailures(id, 'retry-1', failed), false, 'forgotten once');
    const after = await store.status(id);
    assert.equal(after.state, 'running');
    assert.equal(after.done, 1);
    assert.equal(after.byReason['failed:tag-mismatch'], 0);

    assert.equal(await store.recordBatch(id, 'batch-2', [rotated(b, 'rewrap', {})]), 'verify');
    const verification = { at: 1, sourceKeys: 'any-but-target' as const, scanned: 2, remaining: 1, unreadable: 0, byKind: { object: 1, 'noncurrent-version': 0, 'instruction-file': 0, 'orphan-instruction-file': 0, unreadable: 0 }, byKey: { 'arn:old': { object: 1 } }, kmsProbes: 1 };
    assert.equal(await store.recordVerification(id, verification), 'done-with-remainder');
    const end = await store.status(id);
    assert.equal(end.state, 'done-with-remainder');
    assert.deepEqual(end.verification, verification);
    assert.ok(end.finishedAt !== undefined);
  });

  test('a campaign that skips its verification is done when its last batch is recorded', async () => {
    const id = await store.create(campaignSpec([], { skipVerification: true }));
    await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: 1 });
    await store.completePlan(id);
    assert.equal(await store.recordBatch(id, 'only', [rotated({ bucket: 'b', key: 'k' }, 'rewrap', {})]), 'recorded');
    const status = await store.status(id);
    assert.equal(status.state, 'done');
    assert.ok(status.finishedAt !== undefined);
  });

  test('concurrent records of the same batches count each batch exactly once', async () => {
    const id = await store.create(campaignSpec([]));
    const batches = Array.from({ length: 50 }, (_, i) => ({ id: `b${i}`, rows: Array.from({ length: 4 }, (_, j) => rotated({ bucket: 'b', key: `k${i}-${j}` }, 'rewrap', {})) }));
    const limit = pLimit(32);
    const results = await Promise.all([...batches, ...batches, ...batches].map((batch) => limit(() => store.recordBatch(id, batch.id, batch.rows))));
    assert.equal(results.filter((r) => r !== 'duplicate').length, 50);
    assert.equal((await store.status(id)).done, 200);
  });

  test('a listing is planned into batches of keys, every entry whatever its name, and a second plan adds nothing', async () => {
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
      await planCampaign({ s3: stack.s3, store, queue, verifyQueue }, id);
      const status = await store.status(id);
      // Entries named .instruction are planned too: the worker tells an instruction file by its body.
      assert.equal(status.planned, 1239);
      assert.equal(status.planComplete, true);
      const jobs = await queue.getJobs(['prioritized', 'waiting']);
      const mine = jobs.filter((j) => (j.data as BatchJob).c === id);
      assert.equal(mine.length, 13);
      const keys = mine.flatMap((j) => refsOf(j.data as BatchJob).map((r) => r.key));
      assert.equal(new Set(keys).size, 1239);
      assert.ok(keys.every((k) => k.startsWith('p/')));
      assert.equal(keys.filter((k) => k.endsWith('.instruction')).length, 5);
      assert.ok(mine.every((j) => !JSON.stringify(j.data).includes('Plaintext')));

      await planCampaign({ s3: stack.s3, store, queue, verifyQueue }, id);
      assert.equal((await store.status(id)).planned, 1239, 'a finished plan is not planned again');

      const estimate = await estimatePlan(stack.s3, campaignSpec([{ kind: 'listing', bucket, prefix: '' }]), {
        bytesPerSecond: 1e8,
        objectsPerSecond: 100,
      });
      assert.deepEqual({ objects: estimate.objects, bytes: estimate.bytes, kmsCalls: estimate.kmsCalls }, { objects: 1240, bytes: 1245, kmsCalls: 1240 });
      assert.ok(Math.abs(estimate.seconds - 12.4) < 1e-9);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  test('planning pauses while too many planned objects are unsettled, says so, and resumes as workers drain', async () => {
    const bucket = await freshBucket(stack.s3);
    const rows = Array.from({ length: 250 }, (_, i) => `${bucket},k${String(i).padStart(4, '0')}`).join('\n');
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifest.csv', Body: rows }));
    const queue = makeQueue(stack.config, stack.redis);
    try {
      const id = await store.create(campaignSpec([{ kind: 'manifest', uri: `s3://${bucket}/manifest.csv` }], { maxUnsettled: 100, batchSize: 50 }));
      let held = 0;
      const planning = planCampaign({ s3: stack.s3, store, queue, verifyQueue }, id, { pageSize: 50, backpressurePollMs: 50, onBackpressure: () => (held += 1) });
      for (const deadline = Date.now() + 20_000; (await store.status(id)).planning !== 'backpressure'; await sleep(20)) {
        assert.ok(Date.now() < deadline, 'planning never paused');
      }
      const paused = await store.status(id);
      assert.equal(paused.planned, 100, 'no more than the bound is planned while nothing settles');
      assert.equal(paused.planComplete, false);
      // Workers drain: each batch recorded lets planning go on, page by page, until the manifest ends.
      let drained = 0;
      while (!(await store.status(id)).planComplete) {
        const jobs = (await queue.getJobs(['prioritized', 'waiting'])).filter((j) => (j.data as BatchJob).c === id);
        for (const job of jobs) {
          await store.recordBatch(id, job.id!, refsOf(job.data as BatchJob).map((ref) => rotated(ref, 'rewrap', {})));
          await job.remove();
          drained += 1;
        }
        await sleep(50);
      }
      assert.equal(await planning, 'complete');
      const end = await store.status(id);
      assert.deepEqual([end.planned, end.planning], [250, 'listing']);
      assert.ok(held >= 1 && drained >= 2, `held ${held} times, ${drained} batches drained`);
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
      await planCampaign({ s3: stack.s3, store, queue, verifyQueue }, id);
      assert.equal((await store.status(id)).planned, 3);
      const jobs = (await queue.getJobs(['prioritized', 'waiting'])).filter((j) => (j.data as BatchJob).c === id);
      assert.deepEqual(
        jobs.flatMap((j) => refsOf(j.data as BatchJob)),
        [
          { bucket, key: 'a b.txt' },
          { bucket, key: 'dir/c+d', versionId: 'v123' },
          { bucket, key: 'x.instruction' },
        ],
      );
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
