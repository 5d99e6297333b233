import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { seedObjects } from '../../scripts/seed/seed.js';
import { rekey, startWorker, stopWorker } from '../helpers/cli.js';
import { freshBucket, freshKmsKey, openStack, type TestStack } from '../helpers/stack.js';

let stack: TestStack;
let dir: string;
before(async () => {
  stack = openStack();
  dir = await mkdtemp(join(tmpdir(), 'rekey-audit-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await stack.close();
});

test('the audit trail names who started and changed a campaign with which keys, and every object with its old and new key', async () => {
  const oldKey = await freshKmsKey(stack.kms, 'old');
  const newKey = await freshKmsKey(stack.kms, 'new');
  const bucket = await freshBucket(stack.s3);
  await seedObjects(stack.s3, stack.kms, { bucket, count: 30, kmsKeyId: oldKey.keyId });
  const auditLog = join(dir, 'audit.jsonl');
  const env = { REKEY_AUDIT_LOG: auditLog };

  const started = await rekey(stack.config, ['start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId, '--json'], env);
  assert.equal(started.code, 0, started.stderr);
  const { id } = JSON.parse(started.stdout) as { id: string };
  assert.equal((await rekey(stack.config, ['pause', id], env)).code, 0);
  assert.equal((await rekey(stack.config, ['resume', id], env)).code, 0);
  const worker = startWorker(stack.config, [], env);
  for (;;) {
    const status = JSON.parse((await rekey(stack.config, ['status', id, '--json'])).stdout) as CampaignStatus;
    if (status.finishedAt) break;
    await sleep(300);
  }
  assert.equal(await stopWorker(worker), 0);

  const events = (await readFile(auditLog, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, any>);
  const created = events.find((e) => e.event === 'campaign.created');
  assert.ok(created, 'campaign.created is recorded');
  assert.equal(created.campaign, id);
  assert.equal(created.targetKeyArn, newKey.arn);
  assert.equal(created.mode, 'rewrap');
  assert.equal(created.actor.user, userInfo().username);
  assert.equal(created.actor.accessKeyId, 'test');
  assert.ok(created.time, 'each event has a time');
  assert.deepEqual(events.filter((e) => e.event.startsWith('campaign.')).map((e) => e.event), ['campaign.created', 'campaign.paused', 'campaign.resumed', 'campaign.verified']);
  const verified = events.find((e) => e.event === 'campaign.verified')!;
  assert.deepEqual([verified.campaign, verified.state, verified.remaining, verified.unreadable], [id, 'done', 0, 0], 'the closing verification is on the record');

  const objects = events.filter((e) => e.event === 'object.rotated');
  assert.equal(objects.length, 30);
  assert.equal(new Set(objects.map((e) => e.key)).size, 30);
  assert.ok(objects.every((e) => e.campaign === id && e.oldKeyId === oldKey.arn && e.newKeyId === newKey.arn && e.bucket === bucket));
});

test('a schedule is in the audit trail: who made it with which keys, each run it fired, and its removal', async () => {
  const oldKey = await freshKmsKey(stack.kms, 'old');
  const newKey = await freshKmsKey(stack.kms, 'new');
  const bucket = await freshBucket(stack.s3);
  await seedObjects(stack.s3, stack.kms, { bucket, count: 5, kmsKeyId: oldKey.keyId });
  const auditLog = join(dir, 'schedule-audit.jsonl');
  const env = { REKEY_AUDIT_LOG: auditLog };
  const readEvents = async () =>
    (await readFile(auditLog, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, any>);

  const started = await rekey(stack.config, ['start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId, '--every', '1h', '--json'], env);
  assert.equal(started.code, 0, started.stderr);
  const { schedule } = JSON.parse(started.stdout) as { schedule: string };
  const worker = startWorker(stack.config, [], env);
  try {
    const deadline = Date.now() + 40_000;
    while (!(await readEvents()).some((e) => e.event === 'campaign.created')) {
      assert.ok(Date.now() < deadline, 'the first run was not recorded in time');
      await sleep(300);
    }
  } finally {
    assert.equal(await stopWorker(worker), 0);
  }
  assert.equal((await rekey(stack.config, ['unschedule', schedule], env)).code, 0);

  const events = await readEvents();
  const made = events.find((e) => e.event === 'schedule.created');
  assert.ok(made, 'schedule.created is recorded');
  assert.deepEqual([made.schedule, made.everyMs, made.targetKeyArn, made.mode, made.actor.user], [schedule, 3_600_000, newKey.arn, 'rewrap', userInfo().username]);
  const run = events.find((e) => e.event === 'campaign.created');
  assert.equal(run?.schedule, schedule, 'the run names the schedule that fired it');
  assert.ok(String(run?.campaign).startsWith(`${schedule}-`));
  assert.equal(run?.targetKeyArn, newKey.arn);
  assert.deepEqual(events.filter((e) => e.event === 'schedule.removed').map((e) => e.schedule), [schedule]);
});
