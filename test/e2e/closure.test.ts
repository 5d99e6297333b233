import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DisableKeyCommand, EnableKeyCommand } from '@aws-sdk/client-kms';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { rekey, startWorker, stopWorker } from '../helpers/cli.js';
import { freshBucket, freshKmsKey, localKms, openStackWithKeys, strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { putSealed, seal } from '../helpers/sealed.js';

interface AuditRun {
  readonly code: number;
  /** Entries under the key plus those that could not be read: what a key's absence is proven by. */
  readonly remaining: number;
  readonly findings: { key: string; status: string; kind: string }[];
}

/** `rekey audit --json` as a user runs it: its exit code, and its findings. */
async function audit(stack: TestStack, bucket: string, key: TestKey): Promise<AuditRun> {
  const out = await rekey(stack.config, ['audit', '--bucket', bucket, '--key', key.keyId, '--json']);
  const lines = out.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const findings = lines.filter((l) => !('summary' in l)) as unknown as AuditRun['findings'];
  return { code: out.code ?? -1, remaining: findings.length, findings };
}

/** `rekey run --json`: its exit code and the final status it prints. */
async function run(stack: TestStack, args: readonly string[]): Promise<{ code: number; status: CampaignStatus }> {
  const out = await rekey(stack.config, ['run', ...args, '--batch-size', '3', '--json', '--no-watch']);
  assert.ok(out.stdout.trim(), `run printed nothing: ${out.stderr}`);
  return { code: out.code ?? -1, status: JSON.parse(out.stdout.trim().split('\n').at(-1)!) as CampaignStatus };
}

async function exists(stack: TestStack, bucket: string, key: string): Promise<boolean> {
  try {
    await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

/**
 * Provable closure: a campaign's scope is every entry whatever its name, and its closing verification
 * says what `rekey audit` says right after — the same exit code and the same remaining count.
 */
describe('closing a campaign: one scope for the planner and the audit, verified at the end', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys(strictS3()));
  });
  after(() => stack.close());

  const sealed = (instructionFile = false) => seal(stack.kms, randomBytes(1500), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile });

  test('entries of any name are planned; orphans and unreadable entries remain; run and audit agree', async () => {
    const bucket = await freshBucket(stack.s3);
    await putSealed(stack.s3, bucket, 'plain', await sealed());
    // An object whose name ends like an instruction file but whose body is data: the case a planner that goes by names misses.
    await putSealed(stack.s3, bucket, 'report.instruction', await sealed());
    await putSealed(stack.s3, bucket, 'in-file', await sealed(true));
    // An orphan: its object carries its own envelope in metadata, which readers take first.
    const stale = await sealed(true);
    await putSealed(stack.s3, bucket, 'rewritten', await sealed());
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'rewritten.instruction', Body: stale.instructionFile, Metadata: { 'x-amz-crypto-instr-file': '' } }));
    // An orphan whose object is gone.
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'deleted.instruction', Body: stale.instructionFile, Metadata: { 'x-amz-crypto-instr-file': '' } }));
    // Unreadable: S3EC metadata that does not parse.
    const broken = await sealed();
    await putSealed(stack.s3, bucket, 'broken', { ...broken, metadata: { ...broken.metadata, 'x-amz-key-v2': '%%%not-base64' } });
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'not-encrypted', Body: 'hello' }));

    const before = await audit(stack, bucket, oldKey);
    assert.equal(before.code, 3);

    const { code, status } = await run(stack, ['--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId]);
    assert.equal(status.planned, 9, 'every listed entry is planned, whatever its name');
    assert.equal(status.state, 'done-with-remainder');
    const v = status.verification!;
    assert.deepEqual({ orphans: v.byKind['orphan-instruction-file'], unreadable: v.byKind.unreadable, objects: v.byKind.object, files: v.byKind['instruction-file'] }, { orphans: 2, unreadable: 1, objects: 0, files: 0 });
    assert.deepEqual(v.byKey[oldKey.arn], { 'orphan-instruction-file': 2 });

    const afterRun = await audit(stack, bucket, oldKey);
    assert.equal(code, afterRun.code, 'run exits as audit does right after');
    assert.equal(code, 3);
    assert.equal(v.remaining + v.unreadable, afterRun.remaining, 'run and audit count the same remainder');
    assert.deepEqual(afterRun.findings.map((f) => f.key).sort(), ['broken', 'deleted.instruction', 'rewritten.instruction']);

    const report = await rekey(stack.config, ['report', status.id, '--format', 'jsonl']);
    const full = new Map(report.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string | number>).map((r) => [r.Key as string, r]));
    const rows = new Map([...full].map(([key, r]) => [key, `${r.Outcome}${r.Reason ? `:${r.Reason}` : ''}`]));
    // Report columns describe the object: a rewrap of an envelope kept in an instruction file changes the file only.
    const inFile = full.get('in-file')!;
    assert.equal(inFile.NewETag, inFile.OldETag, 'the object itself did not change');
    assert.ok(inFile.InstructionFileOldETag && inFile.InstructionFileNewETag && inFile.InstructionFileOldETag !== inFile.InstructionFileNewETag, JSON.stringify(inFile));
    // A failure no HTTP call made is a PermanentFailure of a task whose calls answered 200, as S3 Batch Operations reports it.
    assert.deepEqual([full.get('broken')!.HTTPStatusCode, full.get('broken')!.ErrorCode, full.get('broken')!.TaskStatus], [200, 'PermanentFailure', 'failed']);
    assert.deepEqual(Object.fromEntries([...rows].sort()), {
      broken: 'failed:bad-metadata',
      'deleted.instruction': 'skipped:orphan-instruction-file',
      'in-file': 'rotated',
      'in-file.instruction': 'skipped:instruction-file',
      'not-encrypted': 'skipped:not-encrypted',
      plain: 'rotated',
      'report.instruction': 'rotated',
      rewritten: 'rotated',
      'rewritten.instruction': 'skipped:orphan-instruction-file',
    });
    const remaining = (await rekey(stack.config, ['report', status.id, '--remaining'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as { key: string; kind: string });
    assert.deepEqual(remaining.map((r) => `${r.key} ${r.kind}`).sort(), ['broken unreadable', 'deleted.instruction orphan-instruction-file', 'rewritten.instruction orphan-instruction-file']);
  });

  test('--remove-orphan-instruction-files deletes orphans after a re-check; a clean scope exits 0 as audit does', async () => {
    const bucket = await freshBucket(stack.s3);
    const stale = await sealed(true);
    await putSealed(stack.s3, bucket, 'rewritten', await sealed());
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'rewritten.instruction', Body: stale.instructionFile, Metadata: { 'x-amz-crypto-instr-file': '' } }));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'deleted.instruction', Body: stale.instructionFile, Metadata: { 'x-amz-crypto-instr-file': '' } }));
    await putSealed(stack.s3, bucket, 'in-file', await sealed(true));

    const { code, status } = await run(stack, ['--bucket', bucket, '--mode', 'rekey', '--target-key', newKey.keyId, '--remove-orphan-instruction-files']);
    assert.equal(status.state, 'done');
    assert.deepEqual([status.verification?.remaining, status.verification?.unreadable], [0, 0]);
    // Two orphans were planted; `in-file`'s own file, dropped by its rekey, is never taken for a third.
    assert.equal(status.byReason['skipped:orphan-removed'], 2, JSON.stringify(status.byReason));
    assert.equal(await exists(stack, bucket, 'rewritten.instruction'), false);
    assert.equal(await exists(stack, bucket, 'deleted.instruction'), false);
    const afterRun = await audit(stack, bucket, oldKey);
    assert.deepEqual([code, afterRun.code, afterRun.remaining], [0, 0, 0]);
  });

  test('an object written under the old key after planning remains, and the closing verification names it', async () => {
    const bucket = await freshBucket(stack.s3);
    for (const key of ['a', 'b', 'c']) await putSealed(stack.s3, bucket, key, await sealed());
    const started = await rekey(stack.config, ['start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId, '--json']);
    assert.equal(started.code, 0, started.stderr);
    const { id } = JSON.parse(started.stdout) as { id: string };
    await putSealed(stack.s3, bucket, 'late', await sealed());
    const worker = startWorker(stack.config);
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    let status: CampaignStatus;
    try {
      for (const deadline = Date.now() + 120_000; ; await sleep(250)) {
        status = await store.status(id);
        if (status.finishedAt !== undefined) break;
        assert.ok(Date.now() < deadline, `campaign ${id} did not end: ${status.state}`);
      }
    } finally {
      await stopWorker(worker);
    }
    assert.equal(status.state, 'done-with-remainder');
    assert.equal(status.verification?.byKind.object, 1);
    assert.deepEqual(status.verification?.byKey[oldKey.arn], { object: 1 });
    const afterRun = await audit(stack, bucket, oldKey);
    assert.deepEqual(afterRun.findings.map((f) => f.key), ['late']);
    const shown = await rekey(stack.config, ['status', id]);
    assert.match(shown.stdout, /1 entries remain/);
  });

  test('on local-kms, an object under a disabled key cannot be told: run and audit both exit 4', async () => {
    const { stack: lk, oldKey: k1, newKey: k2 } = await openStackWithKeys({ ...strictS3(), kmsEndpoint: localKms().endpoint });
    try {
      const k0 = await freshKmsKey(lk.kms, 'disabled');
      const bucket = await freshBucket(lk.s3);
      await putSealed(lk.s3, bucket, 'under-k1', await seal(lk.kms, randomBytes(700), { kmsKeyId: k1.keyId, format: 'v2' }));
      await putSealed(lk.s3, bucket, 'under-k0', await seal(lk.kms, randomBytes(700), { kmsKeyId: k0.keyId, format: 'v2' }));
      await lk.kms.send(new DisableKeyCommand({ KeyId: k0.keyId }));

      const { code, status } = await run(lk, ['--bucket', bucket, '--mode', 'rewrap', '--target-key', k2.keyId, '--source-key', k1.keyId]);
      assert.equal(status.byReason['failed:kms-disabled'], 1, JSON.stringify(status.byReason));
      assert.deepEqual([status.state, status.verification?.remaining, status.verification?.unreadable], ['done-with-remainder', 0, 1]);
      const afterRun = await audit(lk, bucket, k1);
      assert.deepEqual([code, afterRun.code], [4, 4], 'nothing left under the key, but its absence is not proven');
      assert.deepEqual(afterRun.findings.map((f) => [f.key, f.status]), [['under-k0', 'unreadable']]);
    } finally {
      await lk.close();
    }
  });

  test('rows in an S3 report store: report streams them back, retry re-queues the failed ones and the campaign verifies again', async () => {
    const { stack: lk, oldKey: k1, newKey: k2 } = await openStackWithKeys({ ...strictS3(), kmsEndpoint: localKms().endpoint });
    try {
      const k0 = await freshKmsKey(lk.kms, 'disabled, then enabled again');
      const bucket = await freshBucket(lk.s3);
      const reports = await freshBucket(lk.s3);
      for (const key of ['a', 'b', 'c', 'd']) await putSealed(lk.s3, bucket, key, await seal(lk.kms, randomBytes(500), { kmsKeyId: k1.keyId, format: 'v2' }));
      await putSealed(lk.s3, bucket, 'under-k0', await seal(lk.kms, randomBytes(500), { kmsKeyId: k0.keyId, format: 'v2' }));
      await lk.kms.send(new DisableKeyCommand({ KeyId: k0.keyId }));

      const first = await run(lk, ['--bucket', bucket, '--mode', 'rewrap', '--target-key', k2.keyId, '--report-to', `s3://${reports}/campaigns/`]);
      assert.equal(first.code, 4, 'the object under the disabled key cannot be told');
      assert.equal(first.status.byReason['failed:kms-disabled'], 1);
      const listed = await lk.s3.send(new ListObjectsV2Command({ Bucket: reports, Prefix: `campaigns/${first.status.id}/batches/` }));
      assert.ok((listed.KeyCount ?? 0) >= 2, 'one report object per batch');
      const rowsOf = async () => (await rekey(lk.config, ['report', first.status.id, '--format', 'jsonl'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
      assert.deepEqual((await rowsOf()).map((r) => `${r.Key} ${r.Outcome}`).sort(), ['a rotated', 'b rotated', 'c rotated', 'd rotated', 'under-k0 failed']);

      await lk.kms.send(new EnableKeyCommand({ KeyId: k0.keyId }));
      const worker = startWorker(lk.config);
      const store = new CampaignStore(lk.redis, lk.config.redisPrefix);
      try {
        const retried = await rekey(lk.config, ['retry', first.status.id]);
        assert.equal(retried.code, 0, retried.stderr);
        assert.match(retried.stdout, /1 failed objects queued again/);
        let status: CampaignStatus;
        for (const deadline = Date.now() + 120_000; ; await sleep(250)) {
          status = await store.status(first.status.id);
          if (status.finishedAt !== undefined) break;
          assert.ok(Date.now() < deadline, `campaign did not end again: ${status.state}`);
        }
        assert.deepEqual([status.state, status.rotated, status.failed, status.verification?.remaining, status.verification?.unreadable], ['done', 5, 0, 0, 0]);
      } finally {
        await stopWorker(worker);
      }
      // One row per object: the failed row left its batch file when it was queued again.
      assert.deepEqual((await rowsOf()).map((r) => `${r.Key} ${r.Outcome}`).sort(), ['a rotated', 'b rotated', 'c rotated', 'd rotated', 'under-k0 rotated']);
      const afterRun = await audit(lk, bucket, k1);
      assert.deepEqual([afterRun.code, afterRun.remaining], [0, 0]);
    } finally {
      await lk.close();
    }
  });
});
