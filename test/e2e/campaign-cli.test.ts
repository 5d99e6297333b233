import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { parse } from 'csv-parse/sync';
import pLimit from 'p-limit';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { seedObjects, type SeededObject } from '../../scripts/seed/seed.js';
import { rekey, rekeyJson, startWorker, stopWorker } from '../helpers/cli.js';
import { freshBucket, freshKmsKey, openStack, type TestKey, type TestStack } from '../helpers/stack.js';
import { decryptObject } from '../helpers/verify.js';

async function waitForEnd(stack: TestStack, id: string, timeoutMs = 240_000): Promise<CampaignStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await rekeyJson<CampaignStatus>(stack.config, ['status', id, '--json']);
    if (status.finishedAt !== undefined) return status;
    if (Date.now() > deadline) throw new Error(`campaign ${id} did not end: ${JSON.stringify(status)}`);
    await sleep(500);
  }
}

/** Every entry the two buckets list: 2,001 objects and 172 instruction files (every seventh of 1,200). */
const ENTRIES = 2173;

describe('campaigns driven through the CLI, as a user runs them', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let buckets: [string, string];
  const seeded = new Map<string, SeededObject[]>();

  before(async () => {
    stack = openStack();
    oldKey = await freshKmsKey(stack.kms, 'old');
    newKey = await freshKmsKey(stack.kms, 'new');
    buckets = [await freshBucket(stack.s3), await freshBucket(stack.s3)];
    seeded.set(buckets[0], await seedObjects(stack.s3, stack.kms, { bucket: buckets[0], count: 1200, kmsKeyId: oldKey.keyId, sizes: [0, 100, 2048], objectsPerDataKey: 20, instructionFileEvery: 7 }));
    seeded.set(buckets[1], await seedObjects(stack.s3, stack.kms, { bucket: buckets[1], count: 800, kmsKeyId: oldKey.keyId, sizes: [10, 5000], objectsPerDataKey: 1, context: { tenant: 'b' } }));
    await stack.s3.send(new PutObjectCommand({ Bucket: buckets[1], Key: 'plain.txt', Body: 'not encrypted' }));
  });
  after(() => stack.close());

  test('bad flags fail fast with exit 2 and say what to do', async () => {
    const noSource = await rekey(stack.config, ['start', '--mode', 'rewrap', '--target-key', newKey.keyId]);
    assert.equal(noSource.code, 2);
    assert.match(noSource.stderr, /say which objects to rotate: --bucket/);
    const badMode = await rekey(stack.config, ['start', '--bucket', 'b', '--mode', 'shred', '--target-key', newKey.keyId]);
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /Allowed choices are rewrap, rekey/);
    const unknownKey = await rekey(stack.config, ['start', '--bucket', buckets[0], '--mode', 'rewrap', '--target-key', 'alias/does-not-exist']);
    assert.equal(unknownKey.code, 2);
    assert.match(unknownKey.stderr, /target key alias\/does-not-exist/);
    const badRate = await rekey(stack.config, ['start', '--bucket', 'b', '--mode', 'rewrap', '--target-key', 'k', '--kms-rate', '0']);
    assert.equal(badRate.code, 2);
    assert.match(badRate.stderr, /--kms-rate takes a whole number of at least 1/);
  });

  test('a dry run estimates and plans nothing', async () => {
    const estimate = await rekeyJson<{ dryRun: boolean; objects: number; kmsCalls: number; bytes: number }>(stack.config, [
      'start', '--bucket', buckets[0], '--bucket', buckets[1], '--mode', 'rekey', '--target-key', newKey.keyId, '--dry-run', '--json',
    ]);
    // 2,001 objects and the 172 instruction files beside every seventh object of the first bucket.
    assert.equal(estimate.objects, ENTRIES);
    assert.equal(estimate.kmsCalls, 2 * ENTRIES);
    assert.equal((await rekeyJson<unknown[]>(stack.config, ['status', '--json'])).length, 0, 'no campaign was created');
  });

  test('a multi-bucket rewrap campaign survives a killed worker and accounts for every object', async () => {
    const started = await rekeyJson<{ id: string; planned: number }>(stack.config, [
      'start', '--bucket', buckets[0], '--bucket', buckets[1], '--mode', 'rewrap', '--target-key', newKey.keyId,
      '--batch-size', '25', '--name', 'e2e', '--json',
    ]);
    assert.equal(started.planned, ENTRIES);
    const id = started.id;

    const paused = await rekey(stack.config, ['pause', id]);
    assert.equal(paused.code, 0, paused.stderr);
    const first = startWorker(stack.config, ['--concurrency', '4', '--lock-seconds', '5']);
    await sleep(3000);
    const whilePaused = await rekeyJson<CampaignStatus>(stack.config, ['status', id, '--json']);
    assert.equal(whilePaused.done, 0, 'a paused campaign rotates nothing');
    assert.equal((await rekey(stack.config, ['resume', id])).code, 0);

    for (let i = 0; i < 200; i++) {
      const s = await rekeyJson<CampaignStatus>(stack.config, ['status', id, '--json']);
      if (s.done >= 300) break;
      await sleep(200);
    }
    await stopWorker(first, 'SIGKILL');
    const second = startWorker(stack.config, ['--concurrency', '4', '--lock-seconds', '5']);
    const final = await waitForEnd(stack, id);
    assert.equal(await stopWorker(second), 0, 'SIGTERM stops a worker cleanly');
    assert.doesNotMatch(first.output() + second.output(), /Plaintext|plaintext_data_key/);

    assert.equal(final.state, 'done');
    assert.equal(final.planned, ENTRIES);
    assert.equal(final.done, ENTRIES);
    // Objects the killed worker moved but did not get to record are recorded from their write intents
    // by the second worker: rotated with their old key, never rotated twice, never already-rotated.
    assert.equal(final.rotated, 2000, JSON.stringify(final.byReason));
    assert.equal(final.byReason['skipped:already-rotated'] ?? 0, 0, JSON.stringify(final.byReason));
    assert.equal(final.byReason['skipped:instruction-file'], ENTRIES - 2001);
    assert.deepEqual([final.verification?.remaining, final.verification?.unreadable], [0, 0], 'the closing verification found nothing left');
    assert.equal(final.failed, 0, JSON.stringify(final.byReason));
    assert.equal(final.byReason['skipped:not-encrypted'], 1);

    const report = await rekey(stack.config, ['report', id, '--format', 'csv']);
    assert.equal(report.code, 0, report.stderr);
    const rows = parse(report.stdout, { columns: true }) as Record<string, string>[];
    assert.equal(rows.length, ENTRIES);
    assert.equal(new Set(rows.map((r) => `${r.Bucket}/${r.Key}`)).size, ENTRIES, 'one row per entry');
    const rotatedRows = rows.filter((r) => r.Outcome === 'rotated');
    assert.equal(rotatedRows.length, final.rotated);
    assert.ok(rotatedRows.every((r) => r.NewKeyId === newKey.arn && r.OldKeyId === oldKey.arn && r.TaskStatus === 'succeeded'));
    assert.ok(rows.every((r) => r.TaskStatus === 'succeeded'));

    const limit = pLimit(8);
    const sample = [...seeded.entries()].flatMap(([bucket, objects]) => objects.filter((_, i) => i % 37 === 0).map((o) => ({ bucket, ...o })));
    await Promise.all(
      sample.map((o) =>
        limit(async () => {
          const d = await decryptObject(stack, o.bucket, o.key);
          assert.equal(d.sha256, o.sha256, `${o.bucket}/${o.key} decrypts to its original bytes`);
          assert.equal(d.keyId, newKey.arn);
        }),
      ),
    );
  });
});
