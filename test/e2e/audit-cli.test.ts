import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { GenerateDataKeyCommand } from '@aws-sdk/client-kms';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { UsageFinding, UsageSummary } from '../../src/usage/scan.js';
import { seedObjects } from '../../scripts/seed/seed.js';
import { rekey, type CliResult } from '../helpers/cli.js';
import { freshBucket, freshKmsKey, openStack, type TestKey, type TestStack } from '../helpers/stack.js';

function jsonLines(result: CliResult): { findings: UsageFinding[]; summary: UsageSummary } {
  const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as UsageFinding | { summary: UsageSummary });
  const last = lines.pop() as { summary: UsageSummary };
  return { findings: lines as UsageFinding[], summary: last.summary };
}

/** A legacy `kms` wrap (Ruby V1 / Go v1 writers): the context names the key as kms_cmk_id. */
async function putLegacyKmsObject(stack: TestStack, bucket: string, key: string, kmsKey: TestKey): Promise<void> {
  const context = { kms_cmk_id: kmsKey.keyId };
  const dk = await stack.kms.send(new GenerateDataKeyCommand({ KeyId: kmsKey.keyId, KeySpec: 'AES_256', EncryptionContext: context }));
  dk.Plaintext!.fill(0);
  await stack.s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: randomBytes(64),
      Metadata: {
        'x-amz-key-v2': Buffer.from(dk.CiphertextBlob!).toString('base64'),
        'x-amz-iv': randomBytes(12).toString('base64'),
        'x-amz-cek-alg': 'AES/GCM/NoPadding',
        'x-amz-tag-len': '128',
        'x-amz-wrap-alg': 'kms',
        'x-amz-matdesc': JSON.stringify(context),
      },
    }),
  );
}

describe('rekey audit: what still depends on a KMS key, before and after a campaign', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let otherKey: TestKey;
  let bucket: string;

  before(async () => {
    stack = openStack();
    [oldKey, newKey, otherKey] = [await freshKmsKey(stack.kms, 'old'), await freshKmsKey(stack.kms, 'new'), await freshKmsKey(stack.kms, 'other')];
    bucket = await freshBucket(stack.s3);
    // 40 objects under the old key on 8 data keys; every 4th keeps its envelope in an instruction file.
    await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'data/', count: 40, kmsKeyId: oldKey.keyId, sizes: [10, 300], objectsPerDataKey: 5, instructionFileEvery: 4 });
    await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'data/other/', count: 10, kmsKeyId: otherKey.keyId });
    await putLegacyKmsObject(stack, bucket, 'data/legacy', oldKey);
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'data/plain.txt', Body: 'not encrypted' }));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'broken/x', Body: 'x', Metadata: { 'x-amz-key-v2': 'AAAA' } }));
  });
  after(() => stack.close());

  test('objects and instruction files under the key are listed before a campaign (exit 3) and none after (exit 0)', async () => {
    const audit = (key: TestKey, extra: string[] = []) => rekey(stack.config, ['audit', '--bucket', bucket, '--prefix', 'data/', '--key', key.keyId, '--json', ...extra]);

    const beforeRun = await audit(oldKey);
    assert.equal(beforeRun.code, 3, beforeRun.stderr);
    const { findings, summary } = jsonLines(beforeRun);
    assert.equal(findings.length, 41);
    assert.ok(findings.every((f) => f.status === 'under-key' && f.keyId === oldKey.arn));
    const files = findings.filter((f) => f.kind === 'instruction-file');
    assert.equal(files.length, 10);
    assert.ok(files.every((f) => f.key.endsWith('.instruction')), 'the wrapped key is reported where it lives');
    assert.equal(findings.find((f) => f.key === 'data/legacy')?.namedKeyId, oldKey.keyId, 'a legacy kms wrap names its key, and KMS confirmed it');
    assert.deepEqual(summary.scanned, { objects: 52, noncurrentVersions: 0, instructionFiles: 10 });
    assert.deepEqual(summary.underKey, { total: 41, noncurrent: 0, byFormat: { v2: 21, v3: 20 }, byKind: { object: 31, 'instruction-file': 10, 'orphan-instruction-file': 0 } });
    assert.equal(summary.otherKeys, 10);
    assert.equal(summary.notEncrypted, 1);
    assert.equal(summary.keyInInstructionFile, 10);
    assert.equal(summary.unreadable.total, 0);
    assert.equal(summary.kmsProbes, 8 + 1 + 10, 'one ReEncrypt per distinct data key, never one per object');

    const run = await rekey(stack.config, ['run', '--bucket', bucket, '--prefix', 'data/', '--mode', 'rewrap', '--target-key', newKey.keyId, '--source-key', oldKey.keyId, '--no-watch', '--json']);
    assert.equal(run.code, 0, run.stderr);

    const afterRun = await audit(oldKey);
    assert.equal(afterRun.code, 0, afterRun.stderr);
    const cleared = jsonLines(afterRun);
    assert.deepEqual(cleared.findings, []);
    assert.equal(cleared.summary.underKey.total, 0);
    assert.equal(cleared.summary.otherKeys, 51, 'the rotated objects and those under the other key');

    const underNew = await audit(newKey);
    assert.equal(underNew.code, 3);
    assert.equal(jsonLines(underNew).summary.underKey.total, 41);

    const text = await rekey(stack.config, ['audit', '--bucket', bucket, '--prefix', 'data/', '--key', oldKey.keyId]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /under the key {4}0 \(0 noncurrent\)/);
  });

  test('entries that cannot be read leave the key unproven (exit 4), and flags are checked (exit 2)', async () => {
    const broken = await rekey(stack.config, ['audit', '--bucket', bucket, '--prefix', 'broken/', '--key', oldKey.keyId, '--json']);
    assert.equal(broken.code, 4, broken.stderr);
    const { findings, summary } = jsonLines(broken);
    assert.deepEqual(findings.map((f) => [f.status, f.key, f.reason]), [['unreadable', 'broken/x', 'unknown-format']]);
    assert.equal(summary.unreadable.byReason['unknown-format'], 1);

    const noKey = await rekey(stack.config, ['audit', '--bucket', bucket]);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /--key/);
    const help = await rekey(stack.config, ['audit', '--help']);
    assert.match(help.stdout, /3 {2}objects, versions or instruction files remain under the key/);
  });
});
