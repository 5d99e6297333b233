import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, ListObjectVersionsCommand, type ObjectVersion } from '@aws-sdk/client-s3';
import { parse } from 'csv-parse/sync';
import type { UsageFinding, UsageSummary } from '../../src/usage/scan.js';
import { seedObjects, type SeededObject } from '../../scripts/seed/seed.js';
import { rekey, runCampaign } from '../helpers/cli.js';
import { freshBucket, openStack, openStackWithKeys, strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { decryptObject } from '../helpers/verify.js';

const OBJECTS = 12;
/** Every 4th object keeps its envelope in an instruction file: objects 0, 4 and 8. */
const INSTRUCTION_EVERY = 4;
const WITH_FILES = 3;

interface Seeded {
  readonly bucket: string;
  /** The current version of each key (the second write). */
  readonly current: SeededObject[];
  /** Every version of every key before the campaign, by key. */
  readonly versionsBefore: Map<string, ObjectVersion[]>;
}

async function versionsOf(stack: TestStack, bucket: string): Promise<Map<string, ObjectVersion[]>> {
  const out = await stack.s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
  const byKey = new Map<string, ObjectVersion[]>();
  for (const v of out.Versions ?? []) byKey.set(v.Key!, [...(byKey.get(v.Key!) ?? []), v]);
  return byKey;
}

/** A versioned bucket where every key has two versions under the old key: a history and a current one. */
async function seedHistory(stack: TestStack, kmsKeyId: string, count = OBJECTS): Promise<Seeded> {
  const bucket = await freshBucket(stack.s3, { versioned: true });
  const plan = { bucket, prefix: 'v/', count, kmsKeyId, sizes: [10, 700], objectsPerDataKey: 2, instructionFileEvery: INSTRUCTION_EVERY };
  await seedObjects(stack.s3, stack.kms, plan);
  const current = await seedObjects(stack.s3, stack.kms, plan);
  return { bucket, current, versionsBefore: await versionsOf(stack, bucket) };
}

function auditJson(stdout: string): { findings: UsageFinding[]; summary: UsageSummary } {
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as UsageFinding | { summary: UsageSummary });
  return { summary: (lines.pop() as { summary: UsageSummary }).summary, findings: lines as UsageFinding[] };
}

describe('versioned buckets: the current version rotates, old versions are reported, replaced versions purged on request', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
  });
  after(() => stack.close());

  test('rekey mode on a strict S3 (versitygw): replaced object and instruction-file versions go, a metadata copy in place leaves none', async () => {
    const strict = openStack({ ...strictS3(), redisPrefix: stack.config.redisPrefix });
    try {
      const seeded = await seedHistory(strict, oldKey.keyId, 8);
      const final = await runCampaign(strict.config, ['--bucket', seeded.bucket, '--mode', 'rekey', '--target-key', newKey.keyId, '--purge-replaced-versions']);
      assert.deepEqual({ rotated: final.rotated, failed: final.failed }, { rotated: 8, failed: 0 }, JSON.stringify(final.byReason));
      const after = await versionsOf(strict, seeded.bucket);
      for (const o of seeded.current) {
        const d = await decryptObject(strict, seeded.bucket, o.key);
        assert.deepEqual([d.keyId, d.sha256], [newKey.arn, o.sha256]);
        assert.equal(after.get(o.key)!.length, 2, `${o.key}: the rekeyed version and the history`);
        // The envelope moved into object metadata; the file's replaced version went, its history stays.
        if (o.instructionFile) assert.equal(after.get(`${o.key}.instruction`)?.length, 1);
      }
      const report = parse((await rekey(strict.config, ['report', final.id])).stdout, { columns: true }) as Record<string, string>[];
      const withFile = report.find((r) => r.Key === 'v/000000')!;
      assert.equal(withFile.PurgedVersions!.split(' ').length, 2, 'the object version and the instruction-file version it replaced');

      // versitygw rewrites metadata in place (the version id stays): nothing replaced, nothing to purge.
      const again = await runCampaign(strict.config, ['--bucket', seeded.bucket, '--mode', 'rewrap', '--target-key', oldKey.keyId, '--purge-replaced-versions']);
      assert.equal(again.rotated, 8);
      const rows = parse((await rekey(strict.config, ['report', again.id])).stdout, { columns: true }) as Record<string, string>[];
      assert.deepEqual(new Set(rows.map((r) => `${r.Outcome}|${r.ResultMessage}|${r.PurgedVersions}`)), new Set(['rotated|rotated|']));
    } finally {
      await strict.close();
    }
  });

  test('without --include-versions: current versions rotate, and every old version stays under the old key', async () => {
    const seeded = await seedHistory(stack, oldKey.keyId);
    const final = await runCampaign(stack.config, ['--bucket', seeded.bucket, '--mode', 'rewrap', '--target-key', newKey.keyId]);
    // Instruction files are entries of the listing too; they move with their objects.
    assert.deepEqual(
      { planned: final.planned, rotated: final.rotated, files: final.byReason['skipped:instruction-file'], failed: final.failed },
      { planned: OBJECTS + WITH_FILES, rotated: OBJECTS, files: WITH_FILES, failed: 0 },
    );

    const after = await versionsOf(stack, seeded.bucket);
    for (const o of seeded.current) {
      assert.equal((await decryptObject(stack, seeded.bucket, o.key)).keyId, newKey.arn);
      // The rewrite of object metadata adds a version; an envelope in an instruction file adds one to the file.
      const changed = o.instructionFile ? `${o.key}.instruction` : o.key;
      assert.equal(after.get(changed)!.length, 3, `${changed}: a new version on top of both old ones`);
    }

    const audit = await rekey(stack.config, ['audit', '--bucket', seeded.bucket, '--key', oldKey.keyId, '--include-versions', '--json']);
    assert.equal(audit.code, 3, audit.stderr);
    const { findings, summary } = auditJson(audit.stdout);
    assert.equal(summary.underKey.total, 2 * OBJECTS, 'history and replaced version of every key');
    assert.equal(summary.underKey.noncurrent, 2 * OBJECTS);
    assert.equal(summary.underKey.byKind['instruction-file'], 2 * WITH_FILES);
    assert.ok(findings.every((f) => !f.isLatest && f.versionId));

    const report = parse((await rekey(stack.config, ['report', final.id])).stdout, { columns: true }) as Record<string, string>[];
    assert.ok(report.filter((r) => r.Outcome === 'rotated').every((r) => /replaced version stays under the old key/.test(r.ResultMessage!) && r.PurgedVersions === ''));
  });

  test('with --include-versions --purge-replaced-versions: replaced versions go after verification, history is reported and kept', async () => {
    const seeded = await seedHistory(stack, oldKey.keyId);
    const history = new Map([...seeded.versionsBefore].map(([key, versions]) => [key, versions.find((v) => !v.IsLatest)!]));
    const final = await runCampaign(stack.config, ['--bucket', seeded.bucket, '--mode', 'rewrap', '--target-key', newKey.keyId, '--include-versions', '--purge-replaced-versions'], { exitCodes: [3] });
    assert.equal(final.planned, 2 * (OBJECTS + WITH_FILES), 'current versions and one old version per key, instruction files included');
    assert.equal(final.rotated, OBJECTS);
    assert.equal(final.byReason['skipped:instruction-file'], WITH_FILES, 'instruction files travel with their objects');
    assert.equal(final.byReason['skipped:noncurrent-version'], OBJECTS + WITH_FILES);
    assert.equal(final.state, 'done-with-remainder');
    assert.deepEqual(
      { objects: final.verification?.byKind['noncurrent-version'], files: final.verification?.byKind['instruction-file'] },
      { objects: OBJECTS - WITH_FILES, files: WITH_FILES },
      'the closing verification names the history left under the old key',
    );
    assert.equal(final.failed, 0, JSON.stringify(final.byReason));

    const after = await versionsOf(stack, seeded.bucket);
    for (const o of seeded.current) {
      const d = await decryptObject(stack, seeded.bucket, o.key);
      assert.deepEqual([d.keyId, d.sha256], [newKey.arn, o.sha256], `${o.key} is the same content under the new key`);
      const changed = o.instructionFile ? `${o.key}.instruction` : o.key;
      const versions = after.get(changed)!;
      const old = history.get(changed)!;
      assert.deepEqual(
        versions.map((v) => v.IsLatest),
        [true, false],
        `${changed}: the rotated version and the untouched history; the replaced version is gone`,
      );
      assert.equal(versions[1]!.VersionId, old.VersionId);
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: seeded.bucket, Key: changed, VersionId: old.VersionId }));
      assert.equal(head.ETag, old.ETag, 'the old version is byte-identical');
    }

    const report = parse((await rekey(stack.config, ['report', final.id])).stdout, { columns: true }) as Record<string, string>[];
    const rotatedRows = report.filter((r) => r.Outcome === 'rotated');
    assert.equal(rotatedRows.length, OBJECTS);
    for (const r of rotatedRows) {
      const changed = seeded.current.find((o) => o.key === r.Key)!.instructionFile ? `${r.Key}.instruction` : r.Key!;
      const replaced = seeded.versionsBefore.get(changed)!.find((v) => v.IsLatest)!;
      assert.equal(r.PurgedVersions, `${changed}?versionId=${replaced.VersionId}`, 'exactly the replaced version was deleted');
    }
    assert.ok(report.filter((r) => r.Outcome === 'skipped').every((r) => (r.Reason === 'noncurrent-version' && r.VersionId !== '') || (r.Reason === 'instruction-file' && r.VersionId === '')));

    const audit = await rekey(stack.config, ['audit', '--bucket', seeded.bucket, '--key', oldKey.keyId, '--include-versions', '--json']);
    assert.equal(audit.code, 3, audit.stderr);
    const { summary } = auditJson(audit.stdout);
    assert.deepEqual(
      { total: summary.underKey.total, noncurrent: summary.underKey.noncurrent, files: summary.underKey.byKind['instruction-file'] },
      { total: OBJECTS, noncurrent: OBJECTS, files: WITH_FILES },
      'only the history is left under the old key, for the user to keep or delete',
    );
  });
});
