import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../src/config/clients.js';
import { processBatch, type BatchRotator } from '../../../src/campaign/processor.js';
import { makeQueue, type BatchJob } from '../../../src/campaign/queue.js';
import type { CampaignSpec } from '../../../src/campaign/spec.js';
import { openReportStore, outcomesIn, type ReportStore } from '../../../src/campaign/report-store.js';
import { notRotated, rotated, type ObjectOutcome } from '../../../src/rotate/outcome.js';
import { CampaignStore, objectId, type BatchInFlight } from '../../../src/campaign/store.js';
import { UploadJournals } from '../../../src/campaign/upload-journals.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { Rewrapper } from '../../../src/rotate/rewrap.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import type { WriteIntent } from '../../../src/rotate/intent.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../../helpers/stack.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { s3KeyOf, s3Operation } from '../../helpers/s3-ops.js';
import { FaultProxy, s3Error } from '../../helpers/kms-fault-proxy.js';
import { decryptObject } from '../../helpers/verify.js';

const OBJECTS = ['a', 'b', 'c', 'slow'];
const reportDir = mkdtempSync(join(tmpdir(), 'rekey-reports-'));

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
      reportTo: reportDir,
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
      const reports = openReportStore(stack.s3, reportDir, id);
      const batch = processBatch({ s3: proxied, store, journals: new UploadJournals(stack.redis, stack.config.redisPrefix), queue, rotatorFor: () => rekeyer, reportsFor: () => reports }, job, 'batch-1');
      const held = await proxy.nextHeld(30_000);
      const flight = store.inFlight(id, 'batch-1');
      const recordedWhileHeld = await Promise.all(OBJECTS.map((key) => waitForOutcome(flight, { bucket, key }, key !== 'slow')));
      assert.deepEqual(recordedWhileHeld, [true, true, true, false], 'finished objects are kept before the batch ends');
      const intents = (await flight.load()).intents;
      assert.equal(intents.size, OBJECTS.length, 'every write had its intent stored first');

      proxy.release(held, 'forward');
      assert.deepEqual(await batch, { kind: 'done', recorded: OBJECTS.length, retried: 0 });
      const end = await store.status(id);
      assert.deepEqual([end.done, end.rotated, end.state], [OBJECTS.length, OBJECTS.length, 'verifying']);
      const rows = await rowsOf(reports);
      assert.deepEqual(rows.map((r) => [r.ref.key, r.outcome, r.oldKeyId]), OBJECTS.map((k) => [k, 'rotated', oldKey.arn]));
      assert.equal((await flight.load()).intents.size, 0, 'intents go once the rows are durable');
    } finally {
      proxied.destroy();
      await queue.close();
    }
  });

  for (const mode of ['rekey', 'rewrap'] as const) {
    test(`${mode}: a worker stopped between an object's write and its outcome leaves an intent; the batch taken over records it rotated from the old key`, async () => {
      const bucket = await freshBucket(stack.s3);
      const keys = ['x', 'y'];
      for (const key of keys) {
        await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(3000), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: key === 'y' }));
      }
      const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
      const spec: CampaignSpec = {
        name: 'crash record', mode, targetKey: newKey.keyId, targetKeyArn: newKey.arn, sourceKeyArns: [], targetFormat: 'same',
        priority: 'incident', sources: [{ kind: 'listing', bucket, prefix: '' }], kmsRequestsPerSecond: 1000, batchSize: 10, reportTo: reportDir,
      };
      const id = await store.create(spec);
      await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: keys.length });
      await store.completePlan(id);
      const kms = new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: id, ratePerSecond: 1000 }) });
      const target = rotationTarget({ mode, targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
      const rotator = mode === 'rekey' ? new Rekeyer({ s3: stack.s3, kms, pool }, target) : new Rewrapper({ s3: stack.s3, kms }, target);
      const flight = store.inFlight(id, 'crashed');
      const refs = keys.map((key) => ({ bucket, key }));
      // The first worker: its writes land and their intents are stored, then it dies before any outcome is kept.
      for (const ref of refs) {
        await assert.rejects(rotator.rotate([ref], noJournal, async () => { throw new Error('SIGKILL'); }, flight));
      }
      assert.equal((await flight.load()).intents.size, keys.length);

      const queue = makeQueue(stack.config, stack.redis);
      const reports = openReportStore(stack.s3, reportDir, id);
      try {
        const result = await processBatch({ s3: stack.s3, store, journals: new UploadJournals(stack.redis, stack.config.redisPrefix), queue, rotatorFor: () => rotator, reportsFor: () => reports }, { c: id, b: bucket, k: keys }, 'crashed');
        assert.deepEqual(result, { kind: 'done', recorded: keys.length, retried: 0 });
      } finally {
        await queue.close();
      }
      const rows = await rowsOf(reports);
      for (const row of rows) {
        assert.equal(row.outcome, 'rotated', `${row.ref.key}: ${row.reason} ${row.message}`);
        assert.equal(row.oldKeyId, oldKey.arn, 'the row names the key it moved from');
        assert.equal(row.newKeyId, newKey.arn);
        assert.ok(row.newEtag, 'the row carries the new ETag');
        assert.match(row.message, /write intent/);
      }
      assert.deepEqual(rows.map((r) => r.ref.key).sort(), keys);
      const status = await store.status(id);
      assert.deepEqual([status.rotated, status.byReason['skipped:already-rotated'] ?? 0], [keys.length, 0]);
    });
  }
});

describe('a landed rekey whose envelope went to the instruction file is recovered with every replaced version', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  const pool = new CipherPool({ threads: 1 });
  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
  });
  after(async () => {
    await pool.close();
    await stack.close();
  });

  test('the object body and the new instruction file are both writes of the rekey: the replaced object version is purged', async () => {
    const bucket = await freshBucket(stack.s3, { versioned: true });
    const sealed = await seal(stack.kms, randomBytes(3000), { kmsKeyId: oldKey.keyId, format: 'v2' });
    // User metadata so large that the new envelope no longer fits beside it: it goes to `o.instruction`.
    await putSealed(stack.s3, bucket, 'o', sealed, { Metadata: { notes: 'n'.repeat(1900) } });
    const read = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'o' }));
    const kms = new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'in-file-recovery', ratePerSecond: 1000 }) });
    const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [], purgeReplacedVersions: true });
    const rekeyer = new Rekeyer({ s3: stack.s3, kms, pool }, target);
    const intents: WriteIntent[] = [];
    await assert.rejects(rekeyer.rotate([{ bucket, key: 'o' }], noJournal, async () => { throw new Error('SIGKILL'); }, {
      intend: async (intent) => void intents.push(intent),
      movingFromInstructionFile: async () => false,
    }));
    assert.equal(intents[0]!.location, 'instruction-file');

    const outcome = await rekeyer.recover(intents[0]!);
    assert.equal(outcome?.outcome, 'rotated', outcome?.message);
    assert.deepEqual(outcome?.purgedVersions, [{ key: 'o', versionId: read.VersionId }], 'the object version the body replaced is purged, as the writer would have');
    await assert.rejects(stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'o', VersionId: read.VersionId })));
  });

  /**
   * A rekey of `o` (metadata too large for its envelope) whose PUT of the instruction file never lands,
   * as if its worker stopped right there: the body is written, and the intent alone keeps the new key.
   */
  async function stopBeforeInstructionFile(bucket: string): Promise<{ intent: WriteIntent; rekeyer: Rekeyer }> {
    const kms = new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'in-file-completion', ratePerSecond: 1000 }) });
    const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
    const proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
    const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
    try {
      proxy.inject({ fault: s3Error('AccessDenied', 403), match: (r) => s3Operation('PutObject')(r) && s3KeyOf(r.path) === 'o.instruction' });
      const intents: WriteIntent[] = [];
      const [stopped] = await new Rekeyer({ s3: proxied, kms, pool }, target).rotate([{ bucket, key: 'o' }], noJournal, undefined, {
        intend: async (intent) => void intents.push(intent),
        movingFromInstructionFile: async () => false,
      });
      assert.equal(stopped?.reason, 'incomplete-write', stopped?.message);
      return { intent: intents[0]!, rekeyer: new Rekeyer({ s3: stack.s3, kms, pool }, target) };
    } finally {
      proxied.destroy();
      await proxy.close();
    }
  }

  /**
   * The worker that takes the batch over must put that file, or the object's content is lost: the
   * object reads under the old key but holds content under a data key only the intent kept.
   */
  for (const versioned of [false, true]) {
    test(`${versioned ? 'versioned' : 'unversioned'}: stopped between the body and its instruction file, the batch taken over puts the file from the intent`, async () => {
      const bucket = await freshBucket(stack.s3, { versioned });
      const plaintext = randomBytes(70_000);
      await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, plaintext, { kmsKeyId: oldKey.keyId, format: 'v2' }), { Metadata: { notes: 'n'.repeat(1900) } });
      const { intent, rekeyer } = await stopBeforeInstructionFile(bucket);
      await assert.rejects(decryptObject(stack, bucket, 'o'), 'the new body under the old key opens under no stored key');

      const outcome = await rekeyer.recover(intent);
      assert.deepEqual([outcome?.outcome, outcome?.oldKeyId, outcome?.newKeyId], ['rotated', oldKey.arn, newKey.arn], outcome?.message);
      const read = await decryptObject(stack, bucket, 'o');
      assert.deepEqual([read.keyId, read.sha256], [newKey.arn, createHash('sha256').update(plaintext).digest('hex')]);
    });
  }

  test('a body another writer put after the intent is not taken for the rotation\'s own', async () => {
    const bucket = await freshBucket(stack.s3);
    await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, randomBytes(5000), { kmsKeyId: oldKey.keyId, format: 'v2' }), { Metadata: { notes: 'n'.repeat(1900) } });
    const { intent, rekeyer } = await stopBeforeInstructionFile(bucket);
    // Another writer replaces the object with content of its own, readable under the old key.
    const foreign = randomBytes(4000);
    await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, foreign, { kmsKeyId: oldKey.keyId, format: 'v2' }));
    assert.equal(await rekeyer.recover(intent), undefined);
    const read = await decryptObject(stack, bucket, 'o');
    assert.deepEqual([read.keyId, read.sha256], [oldKey.arn, createHash('sha256').update(foreign).digest('hex')], 'the other writer\'s content stays as written');
  });
});

async function rowsOf(reports: ReportStore): Promise<ObjectOutcome[]> {
  const rows: ObjectOutcome[] = [];
  for await (const row of outcomesIn(reports)) rows.push(row);
  return rows;
}

/** Polls briefly for an outcome the test expects; one it does not expect gets a short look only. */
async function waitForOutcome(flight: BatchInFlight, ref: { bucket: string; key: string }, expected: boolean): Promise<boolean> {
  const deadline = Date.now() + (expected ? 20_000 : 500);
  for (;;) {
    if ((await flight.load()).rows.has(objectId(ref))) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A batch that hands an object to a retry batch and then fails before it is recorded (its report write
 * or Redis went away) is processed again: the object belongs to the retry batch then, and gets exactly
 * one outcome, from it. The rotation is the processor's own interface here, so the test sets which
 * object fails retryably; queue, records and report store are the real ones.
 */
describe('an object handed to a retry batch is not also rotated by its batch taken up again', () => {
  let stack: TestStack;
  before(async () => {
    ({ stack } = await openStackWithKeys());
  });
  after(() => stack.close());

  test('the batch taken up again queues the same retry job and leaves the object to it', async () => {
    const bucket = await freshBucket(stack.s3);
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    const spec: CampaignSpec = {
      name: 'hand-off', mode: 'rewrap', targetKey: 'k', targetKeyArn: 'arn:k', sourceKeyArns: [], targetFormat: 'same',
      priority: 'incident', sources: [{ kind: 'listing', bucket, prefix: '' }], kmsRequestsPerSecond: 1000, batchSize: 10, reportTo: reportDir,
    };
    const id = await store.create(spec);
    await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: 2 });
    await store.completePlan(id);
    const rotations: string[] = [];
    const rotator: BatchRotator = {
      async rotate(refs, _journal, onOutcome) {
        const outcomes = refs.map((ref) => {
          rotations.push(ref.key);
          const firstTry = rotations.filter((k) => k === ref.key).length === 1;
          return ref.key === 'flaky' && firstTry ? notRotated(ref, 'rewrap', 's3-error', 'SlowDown (HTTP 503)') : rotated(ref, 'rewrap', {});
        });
        for (const o of outcomes) await onOutcome?.(o);
        return outcomes;
      },
      recover: async () => undefined,
    };
    const real = openReportStore(stack.s3, reportDir, id);
    let reportWrites = 0;
    const reports: ReportStore = {
      location: real.location,
      batches: () => real.batches(),
      putRemaining: (lines) => real.putRemaining(lines),
      remaining: () => real.remaining(),
      putBatch: async (batchId, rows) => {
        reportWrites += 1;
        if (reportWrites === 1) throw new Error('the report store is unreachable');
        await real.putBatch(batchId, rows);
      },
    };
    const queue = makeQueue(stack.config, stack.redis);
    const deps = { s3: stack.s3, store, journals: new UploadJournals(stack.redis, stack.config.redisPrefix), queue, rotatorFor: () => rotator, reportsFor: () => reports };
    const job: BatchJob = { c: id, b: bucket, k: ['ok', 'flaky'] };
    const retryJobs = async () => (await queue.getJobs(['delayed', 'waiting', 'prioritized'])).filter((j) => j.data.c === id);
    try {
      await assert.rejects(processBatch(deps, job, 'first'), /unreachable/);
      const [queued] = await retryJobs();
      assert.deepEqual(queued?.data.k, ['flaky'], 'the first attempt handed flaky to a retry batch');

      // ok settled in the first attempt (kept in Redis); this one settles nothing new, it writes the report.
      assert.deepEqual(await processBatch(deps, job, 'first'), { kind: 'done', recorded: 0, retried: 0 });
      assert.deepEqual(rotations, ['ok', 'flaky'], 'the attempt taken up again rotated nothing: ok was settled, flaky handed off');
      assert.deepEqual((await retryJobs()).map((j) => j.id), [queued!.id], 'the same retry job, queued once');

      assert.deepEqual(await processBatch(deps, queued!.data, queued!.id!), { kind: 'done', recorded: 1, retried: 0 });
      const rows = await rowsOf(reports);
      assert.deepEqual(rows.map((r) => [r.ref.key, r.outcome]).sort(), [['flaky', 'rotated'], ['ok', 'rotated']]);
      const status = await store.status(id);
      assert.deepEqual([status.done, status.rotated, status.state], [2, 2, 'verifying']);
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    }
  });
});
