import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { parse } from 'csv-parse/sync';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { seedObjects } from '../../scripts/seed/seed.js';
import { rekey, rekeyJson, startWorker, stopWorker } from '../helpers/cli.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../helpers/stack.js';

interface ScheduleRow {
  readonly id: string;
  readonly everyMs: number;
  readonly minAgeMs: number;
  readonly nextRunAt?: number;
  readonly runs: { campaignId: string; firedAt: number; state: string }[];
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 40_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

describe('scheduled campaigns: a schedule fires, each run is a campaign of old-enough objects', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
  });
  after(() => stack.close());

  test('start --every 2s --min-age 3s: the first run rotates only the objects old enough at its firing, later runs the rest; unschedule stops it', async () => {
    const bucket = await freshBucket(stack.s3);
    const old = await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'old/', count: 10, kmsKeyId: oldKey.keyId });
    await sleep(4_000);
    const created = await rekeyJson<{ schedule: string; every: string; minAge: string }>(stack.config, [
      'start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId, '--every', '2s', '--min-age', '3s', '--name', 'weekly', '--json',
    ]);
    assert.deepEqual([created.every, created.minAge], ['2s', '3s']);
    const id = created.schedule;
    // The first run fired as the schedule was made; its cut-off is that moment less 3s, however late a
    // worker takes it. Objects written now are younger than the cut-off, whatever the machine's load.
    await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'young/', count: 4, kmsKeyId: oldKey.keyId });
    const worker = startWorker(stack.config, ['--concurrency', '2']);
    try {
      const runsOf = async () =>
        (await rekeyJson<CampaignStatus[]>(stack.config, ['status', '--json'])).filter((c) => c.spec.schedule?.id === id).sort((a, b) => a.spec.schedule!.firedAt - b.spec.schedule!.firedAt);
      const status = await until('the first run to finish', async () => {
        const [first] = await runsOf();
        return first?.finishedAt !== undefined ? first : undefined;
      });
      const [row] = (await rekeyJson<ScheduleRow[]>(stack.config, ['schedules', '--json'])).filter((r) => r.id === id);
      assert.ok(row!.runs.length > 0 && row!.runs.every((r) => r.campaignId.startsWith(`${id}-`)), 'the schedule lists its runs');
      assert.equal(status.spec.schedule!.id, id, 'the run is linked to its schedule');
      assert.match(status.spec.name, /^weekly \(\d{4}-\d\d-\d\dT/);
      assert.deepEqual({ planned: status.planned, rotated: status.rotated }, { planned: 10, rotated: 10 });
      const rows = parse((await rekey(stack.config, ['report', status.id])).stdout, { columns: true }) as Record<string, string>[];
      assert.deepEqual(rows.map((r) => r.Key).sort(), old.map((o) => o.key).sort(), 'objects younger than the cut-off waited');

      await until('a later run to rotate the young objects', async () => {
        const audit = await rekey(stack.config, ['audit', '--bucket', bucket, '--key', oldKey.keyId, '--json']);
        return audit.code === 0 ? true : undefined;
      });

      const text = await rekey(stack.config, ['schedules']);
      assert.match(text.stdout, new RegExp(`schedule ${id} \\(weekly\\): every 2s, objects last modified at least 3s ago`));
      assert.equal((await rekey(stack.config, ['unschedule', id])).code, 0);
      const gone = await rekey(stack.config, ['unschedule', id]);
      assert.equal(gone.code, 2);
      assert.match(gone.stderr, /no schedule/);
      assert.deepEqual((await rekeyJson<ScheduleRow[]>(stack.config, ['schedules', '--json'])).filter((r) => r.id === id), []);

      await sleep(1_500); // a firing taken just before the removal may still be making its run
      const runs = (await runsOf()).length;
      await sleep(4_500);
      assert.equal((await runsOf()).length, runs, 'no run after unschedule');
    } finally {
      assert.equal(await stopWorker(worker), 0, worker.output());
    }
  });

  test('schedules need a listing, the scheduled priority, and start', async () => {
    const manifest = await rekey(stack.config, ['start', '--manifest', 'x.csv', '--mode', 'rewrap', '--target-key', newKey.keyId, '--every', '1d']);
    assert.equal(manifest.code, 2);
    assert.match(manifest.stderr, /--every needs --bucket/);
    const incident = await rekey(stack.config, ['start', '--bucket', 'b', '--mode', 'rewrap', '--target-key', newKey.keyId, '--every', '1d', '--priority', 'incident']);
    assert.equal(incident.code, 2);
    assert.match(incident.stderr, /--every makes a scheduled campaign/);
    const badDuration = await rekey(stack.config, ['start', '--bucket', 'b', '--mode', 'rewrap', '--target-key', newKey.keyId, '--every', 'weekly']);
    assert.equal(badDuration.code, 2);
    assert.match(badDuration.stderr, /--every takes a duration/);
    assert.equal((await rekey(stack.config, ['run', '--bucket', 'b', '--mode', 'rewrap', '--target-key', newKey.keyId, '--every', '1d'])).code, 2);
  });
});
