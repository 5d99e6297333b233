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
  assert.deepEqual(events.filter((e) => e.event.startsWith('campaign.')).map((e) => e.event), ['campaign.created', 'campaign.paused', 'campaign.resumed']);

  const objects = events.filter((e) => e.event === 'object.rotated');
  assert.equal(objects.length, 30);
  assert.equal(new Set(objects.map((e) => e.key)).size, 30);
  assert.ok(objects.every((e) => e.campaign === id && e.oldKeyId === oldKey.arn && e.newKeyId === newKey.arn && e.bucket === bucket));
});
