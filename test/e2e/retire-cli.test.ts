import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateAliasCommand, CreateKeyCommand, DescribeKeyCommand, EnableKeyCommand, ReplicateKeyCommand } from '@aws-sdk/client-kms';
import { DeleteObjectCommand, ListObjectVersionsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Retirement } from '../../src/retirement/store.js';
import { CampaignWorker } from '../../src/worker/campaign-worker.js';
import { createMetrics } from '../../src/metrics/index.js';
import { seedObjects } from '../../scripts/seed/seed.js';
import { rekey, rekeyJson, type CliResult } from '../helpers/cli.js';
import { freshBucket, freshKmsKey, kmsEndpoints, openStack, uniqueName, type TestKey, type TestStack } from '../helpers/stack.js';

const DAY = 86_400_000;

/** The observation period's clock, moved on: REKEY_RETIREMENT_NOW is read by the CLI only. */
const daysFromNow = (days: number) => ({ REKEY_RETIREMENT_NOW: new Date(Date.now() + days * DAY).toISOString() });

type Event = Record<string, any>;

async function kmsState(stack: TestStack, key: TestKey): Promise<string | undefined> {
  return (await stack.kms.send(new DescribeKeyCommand({ KeyId: key.keyId }))).KeyMetadata?.KeyState;
}

function refusal(result: CliResult): string {
  return (JSON.parse(result.stdout.trim().split('\n').pop()!) as { refused: { reason: string } }).refused.reason;
}

/** A fixture per test file: a bucket, an audit trail, and the CLI with both. */
async function retireFixture(stack: TestStack) {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-retire-'));
  const auditLog = join(dir, 'audit.jsonl');
  const run = (args: readonly string[], env: NodeJS.ProcessEnv = {}) => rekey(stack.config, args, { REKEY_AUDIT_LOG: auditLog, ...env });
  const events = async (keyArn: string): Promise<Event[]> =>
    (await readFile(auditLog, 'utf8').catch(() => ''))
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Event)
      .filter((e) => e.keyArn === keyArn);
  const keys = async () => (await rekeyJson<{ retirement: Retirement; kmsState: string }[]>(stack.config, ['keys', '--json']));
  return { dir, run, events, keys, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Each refusal and the whole workflow run against both KMS implementations of the stack: real
 * DisableKey, ScheduleKeyDeletion, CancelKeyDeletion and key states. Only local-kms refuses a disabled
 * key, so only there does rekey meet refusals for the retiring key.
 */
for (const kms of kmsEndpoints()) {
  const refuses = kms.name === 'local-kms';
  describe(`rekey retire against ${kms.name}: refusals, the whole workflow, key states`, () => {
    let stack: TestStack;
    let fx: Awaited<ReturnType<typeof retireFixture>>;
    let bucket: string;
    let probe: TestKey;

    before(async () => {
      stack = openStack({ kmsEndpoint: kms.endpoint });
      fx = await retireFixture(stack);
      bucket = await freshBucket(stack.s3, { versioned: true });
      probe = await freshKmsKey(stack.kms, 'probe');
    });
    after(async () => {
      await fx.cleanup();
      await stack.close();
    });

    test('one object left under the key: refused with exit 3, the key stays enabled, the refusal is in the audit trail', async () => {
      const key = await freshKmsKey(stack.kms, 'in use');
      await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'one-left/', count: 1, kmsKeyId: key.keyId });
      const r = await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'one-left/', '--json']);
      assert.equal(r.code, 3, r.stderr);
      assert.equal(refusal(r), 'key-in-use');
      assert.match(r.stdout, /"status":"under-key"/);
      assert.equal(await kmsState(stack, key), 'Enabled');
      const [event] = await fx.events(key.arn);
      assert.equal(event?.event, 'key.retire-refused');
      assert.equal(event?.refusal, 'key-in-use');
      assert.equal(event?.proof.remaining, 1);
      assert.ok(!(await fx.keys()).some((k) => k.retirement.keyArn === key.arn), 'a refused key is not in retirement');
    });

    test('one noncurrent version left under the key: refused with exit 3; a versioned bucket is always audited with its versions', async () => {
      const key = await freshKmsKey(stack.kms, 'old version');
      await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'old-version/', count: 1, kmsKeyId: key.keyId });
      const [current] = await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'old-version/', count: 1, kmsKeyId: probe.keyId });
      assert.ok(current);
      const r = await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'old-version/', '--include-versions', '--json']);
      assert.equal(r.code, 3, r.stderr);
      const finding = JSON.parse(r.stdout.split('\n')[0]!) as { isLatest: boolean; status: string };
      assert.deepEqual([finding.status, finding.isLatest], ['under-key', false]);
      // Versioning is on: the versions are audited even when --include-versions is left out.
      const implicit = await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'old-version/', '--json']);
      assert.equal(implicit.code, 3, implicit.stderr);
      assert.equal(await kmsState(stack, key), 'Enabled');
    });

    test('an entry that cannot be read: refused with exit 4', async () => {
      const key = await freshKmsKey(stack.kms, 'unproven');
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'unreadable/x', Body: 'x', Metadata: { 'x-amz-key-v2': 'AAAA' } }));
      const r = await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'unreadable/', '--json']);
      assert.equal(r.code, 4, r.stderr);
      assert.equal(refusal(r), 'key-use-unproven');
      assert.equal(await kmsState(stack, key), 'Enabled');
    });

    test('the whole workflow: disable, observe, a fresh audit finds what was left, schedule, cancel', async () => {
      const key = await freshKmsKey(stack.kms, 'retired');
      await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'moved/', count: 3, kmsKeyId: probe.keyId });
      await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'forgotten/', count: 1, kmsKeyId: key.keyId });

      const disabled = await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'moved/', '--include-versions', '--reason', 'CHG-1', '--json']);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.equal(await kmsState(stack, key), 'Disabled');
      const [event] = (await fx.events(key.arn)).filter((e) => e.event === 'key.disabled');
      assert.ok(event, 'key.disabled is in the audit trail');
      assert.deepEqual(event.proof.scopes, [{ bucket, prefix: 'moved/' }]);
      assert.deepEqual([event.proof.scanned.objects, event.proof.remaining, event.proof.unreadable], [3, 0, 0]);
      assert.equal(event.reason, 'CHG-1');
      assert.ok(event.actor.user && event.actor.host, 'the operator is named');

      const early = await fx.run(['retire', key.keyId, '--schedule-deletion', '--probe-key', probe.keyId, '--json']);
      assert.equal(early.code, 5, early.stderr);
      assert.equal(refusal(early), 'observation-period');
      assert.match(early.stderr, /observation period ends on/);
      const sixDays = await fx.run(['retire', key.keyId, '--schedule-deletion', '--probe-key', probe.keyId, '--json'], daysFromNow(6));
      assert.equal(refusal(sixDays), 'observation-period', 'the default period is 7 days');

      const noProbe = await fx.run(['retire', key.keyId, '--schedule-deletion'], daysFromNow(8));
      assert.equal(noProbe.code, 2);
      assert.match(noProbe.stderr, /--probe-key/);

      // Another scope still holds an entry under the key: local-kms refuses the disabled key, naming it;
      // moto lets the probe through and names the key as its source.
      const stillUsed = await fx.run(['retire', key.keyId, '--schedule-deletion', '--probe-key', probe.keyId, '--bucket', bucket, '--prefix', 'forgotten/', '--json'], daysFromNow(8));
      assert.equal(stillUsed.code, 3, stillUsed.stderr);
      assert.equal(await kmsState(stack, key), 'Disabled');
      const counted = (await fx.keys()).find((k) => k.retirement.keyArn === key.arn)!;
      assert.equal(counted.retirement.refusals, refuses ? 1 : 0, 'the refusal KMS gave rekey for the retiring key is counted');
      const refusalEvents = (await fx.events(key.arn)).filter((e) => e.event === 'key.refusal' && String(e.key).startsWith('forgotten/') && e.source === 'retire-audit');
      assert.equal(refusalEvents.length, refuses ? 1 : 0);

      // Versions are audited as when the key was disabled: the object goes with every version of it.
      await deleteEveryVersion(stack, bucket, 'forgotten/');
      const scheduled = await fx.run(
        ['retire', key.keyId, '--schedule-deletion', '--pending-days', '7', '--probe-key', probe.keyId, '--bucket', bucket, '--prefix', 'forgotten/', '--json'],
        daysFromNow(8),
      );
      assert.equal(scheduled.code, 0, scheduled.stderr);
      const meta = (await stack.kms.send(new DescribeKeyCommand({ KeyId: key.keyId }))).KeyMetadata!;
      assert.equal(meta.KeyState, 'PendingDeletion');
      const days = (meta.DeletionDate!.getTime() - Date.now()) / DAY;
      assert.ok(days > 6.9 && days <= 7.01, `deletion in ${days} days`);
      const deletion = (await fx.events(key.arn)).find((e) => e.event === 'key.deletion-scheduled')!;
      assert.equal(deletion.pendingDays, 7);
      assert.equal(deletion.clock, 'REKEY_RETIREMENT_NOW', 'a step taken under an overridden clock says so');
      assert.ok(deletion.observedMs >= 8 * DAY - 60_000);
      assert.equal(deletion.proof.remaining, 0);
      // The scope of the disable step and the one added since, versions included as when disabled.
      assert.deepEqual(deletion.proof.scopes, [{ bucket, prefix: 'moved/' }, { bucket, prefix: 'forgotten/' }]);
      assert.equal(deletion.proof.includeVersions, true);

      const listed = (await fx.keys()).find((k) => k.retirement.keyArn === key.arn)!;
      assert.equal(listed.kmsState, 'PendingDeletion');
      assert.equal(listed.retirement.state, 'pending-deletion');
      assert.deepEqual(listed.retirement.steps.map((s) => s.step), ['disabled', 'deletion-scheduled']);
      assert.equal(listed.retirement.deletionDate, meta.DeletionDate!.getTime());
      const text = await rekey(stack.config, ['keys']);
      assert.match(text.stdout, new RegExp(`${key.arn}  pending-deletion \\(KMS: PendingDeletion\\)`));
      assert.match(text.stdout, /deletion date {4}\S+ \(pending window 7 days\)/);

      const again = await fx.run(['retire', key.keyId, '--schedule-deletion', '--probe-key', probe.keyId, '--json'], daysFromNow(9));
      assert.equal(refusal(again), 'not-retiring');

      const cancelled = await fx.run(['retire', key.keyId, '--cancel', '--reason', 'still needed']);
      assert.equal(cancelled.code, 0, cancelled.stderr);
      assert.equal(await kmsState(stack, key), 'Enabled');
      assert.ok((await fx.events(key.arn)).some((e) => e.event === 'key.deletion-cancelled' && e.reason === 'still needed'));
      assert.equal((await fx.keys()).find((k) => k.retirement.keyArn === key.arn)?.retirement.state, 'cancelled');
    });

    test('deletion is refused for a key rekey did not disable, and for one enabled again outside rekey', async () => {
      const key = await freshKmsKey(stack.kms, 'not retired');
      const r = await fx.run(['retire', key.keyId, '--schedule-deletion', '--probe-key', probe.keyId, '--json'], daysFromNow(30));
      assert.equal(r.code, 5);
      assert.equal(refusal(r), 'not-retiring');
      assert.equal(await kmsState(stack, key), 'Enabled');

      const retired = await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'nothing/']);
      assert.equal(retired.code, 0, retired.stderr);
      await stack.kms.send(new EnableKeyCommand({ KeyId: key.keyId }));
      const drifted = await fx.run(['retire', key.keyId, '--schedule-deletion', '--probe-key', probe.keyId, '--json'], daysFromNow(30));
      assert.equal(drifted.code, 5);
      assert.equal(refusal(drifted), 'key-state');
      assert.match(drifted.stderr, /changed outside rekey/);
      assert.equal(await kmsState(stack, key), 'Enabled');
    });

    test("a campaign's refusals for a retiring key are counted in Redis, the audit trail and the worker's metrics", { skip: !refuses && 'moto lets a disabled key work' }, async () => {
      const key = await freshKmsKey(stack.kms, 'still read');
      await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'late/', count: 3, kmsKeyId: key.keyId });
      // The key is retired over another scope: the objects under late/ were overlooked.
      assert.equal((await fx.run(['retire', key.keyId, '--bucket', bucket, '--prefix', 'nothing/'])).code, 0);
      const run = await fx.run(['run', '--bucket', bucket, '--prefix', 'late/', '--mode', 'rewrap', '--target-key', probe.keyId, '--no-watch', '--json']);
      // The closing verification cannot tell the key of the objects under the disabled key: exit 4, as audit.
      assert.equal(run.code, 4, run.stderr);
      assert.equal((JSON.parse(run.stdout.trim().split('\n').pop()!) as { byReason: Record<string, number> }).byReason['failed:kms-disabled'], 3);

      const listed = (await fx.keys()).find((k) => k.retirement.keyArn === key.arn)!;
      assert.equal(listed.retirement.refusals, 3);
      const refusals = (await fx.events(key.arn)).filter((e) => e.event === 'key.refusal');
      assert.equal(refusals.length, 3);
      assert.ok(refusals.every((e) => e.source === 'campaign' && String(e.key).startsWith('late/') && e.reason === 'kms-disabled'));

      // `rekey audit` meets the same refusals when it probes the objects left under the disabled key.
      const audited = await fx.run(['audit', '--bucket', bucket, '--prefix', 'late/', '--key', key.keyId, '--probe-key', probe.keyId, '--json']);
      assert.equal(audited.code, 4, audited.stderr);
      assert.equal((await fx.keys()).find((k) => k.retirement.keyArn === key.arn)!.retirement.refusals, 6);
      assert.equal((await fx.events(key.arn)).filter((e) => e.event === 'key.refusal' && e.source === 'audit').length, 3);

      // What any worker exports, read from Redis: the refusals were met by other processes.
      const metrics = createMetrics();
      const worker = new CampaignWorker(stack.config, { metrics, threads: 1 });
      const text = await metrics.registry.metrics().finally(() => worker.close());
      assert.match(text, new RegExp(`rekey_retiring_key_refusals_total\\{key="${key.arn}"\\} 6`));
      assert.match(text, new RegExp(`rekey_retiring_key_state\\{key="${key.arn}",state="disabled"\\} 1`));
    });

    test('bad flags fail fast with exit 2', async () => {
      for (const args of [
        ['retire', 'k', '--bucket', bucket, '--schedule-deletion', '--pending-days', '6'],
        ['retire', 'k', '--schedule-deletion', '--cancel'],
        ['retire', 'k', '--bucket', bucket, '--observe', '7d'],
        ['retire', 'k', '--prefix', 'p/'],
      ]) {
        const r = await fx.run(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.ok(r.stderr.length > 0);
      }
      const noRedis = await fx.run(['retire', probe.keyId, '--bucket', bucket], { REDIS_URL: 'redis://127.0.0.1:1' });
      assert.equal(noRedis.code, 1);
      assert.match(noRedis.stderr, /Redis at (redis:\/\/)?127\.0\.0\.1:1 is unreachable/, 'an unreachable Redis is named, not waited for');
      const noScope = await fx.run(['retire', probe.keyId]);
      assert.equal(noScope.code, 2);
      assert.match(noScope.stderr, /--bucket B \[--prefix P\] or --campaign ID/);
      assert.equal(await kmsState(stack, probe), 'Enabled');
    });
  });
}

async function deleteEveryVersion(stack: TestStack, bucket: string, prefix: string): Promise<void> {
  const out = await stack.s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix }));
  for (const v of [...(out.Versions ?? []), ...(out.DeleteMarkers ?? [])]) {
    await stack.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key!, VersionId: v.VersionId! }));
  }
}

describe('rekey retire against moto: aliases, AWS managed keys, multi-Region keys, campaigns (local-kms has no multi-Region keys)', () => {
  let stack: TestStack;
  let fx: Awaited<ReturnType<typeof retireFixture>>;
  let bucket: string;

  before(async () => {
    stack = openStack();
    fx = await retireFixture(stack);
    bucket = await freshBucket(stack.s3);
  });
  after(async () => {
    await fx.cleanup();
    await stack.close();
  });

  test('an alias resolves to the key ARN, and the happy path disables the key', async () => {
    const key = await freshKmsKey(stack.kms, 'aliased');
    const alias = `alias/${uniqueName('a')}`;
    await stack.kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: key.keyId }));
    const r = await fx.run(['retire', alias, '--bucket', bucket, '--prefix', 'empty/']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${key.arn}: disabled`));
    assert.match(r.stdout, new RegExp(`warning: aliases still point at the key: ${alias}`));
    assert.equal(await kmsState(stack, key), 'Disabled');
    const listed = (await fx.keys()).find((k) => k.retirement.keyArn === key.arn);
    assert.deepEqual(listed?.retirement.aliases, [alias]);

    const enabled = await fx.run(['retire', alias, '--cancel', '--reason', 'wrong key']);
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.match(enabled.stdout, new RegExp(`^${key.arn}: enabled`));
    assert.equal(await kmsState(stack, key), 'Enabled');
    assert.ok((await fx.events(key.arn)).some((e) => e.event === 'key.enabled' && e.reason === 'wrong key'));
  });

  test('an AWS managed key is refused with exit 2 and left as it is', async () => {
    const r = await fx.run(['retire', 'alias/aws/s3', '--bucket', bucket, '--json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(refusal(r), 'aws-managed-key');
    assert.match(r.stderr, /AWS managed key/);
  });

  test('a multi-Region primary: disabling warns of its replicas, deleting it is refused while they remain', async () => {
    const created = await stack.kms.send(new CreateKeyCommand({ MultiRegion: true, Description: 'mrk' }));
    const primary = created.KeyMetadata!;
    const replica = await stack.kms.send(new ReplicateKeyCommand({ KeyId: primary.KeyId, ReplicaRegion: 'eu-west-1' }));
    const probe = await freshKmsKey(stack.kms, 'probe');
    const r = await fx.run(['retire', primary.KeyId!, '--bucket', bucket, '--prefix', 'empty/']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`warning: multi-Region key: the same key material still decrypts in ${replica.ReplicaKeyMetadata!.Arn}`));
    const del = await fx.run(['retire', primary.KeyId!, '--schedule-deletion', '--probe-key', probe.keyId, '--json'], daysFromNow(8));
    assert.equal(del.code, 5, del.stderr);
    assert.equal(refusal(del), 'replicas-remain');
    assert.equal(await kmsState(stack, { keyId: primary.KeyId!, arn: primary.Arn! }), 'Disabled');
  });

  test("a campaign's scope is audited, and a key a running campaign moves data to is refused", async () => {
    const key = await freshKmsKey(stack.kms, 'campaign target');
    const other = await freshKmsKey(stack.kms, 'campaign source');
    await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'c/', count: 2, kmsKeyId: other.keyId });
    // No worker runs: the campaign stays running with its objects queued.
    const started = await rekeyJson<{ id: string }>(stack.config, ['start', '--bucket', bucket, '--prefix', 'c/', '--mode', 'rewrap', '--target-key', key.keyId, '--json']);
    const busy = await fx.run(['retire', key.keyId, '--campaign', started.id, '--json']);
    assert.equal(busy.code, 5, busy.stderr);
    assert.equal(refusal(busy), 'campaign-uses-key');
    assert.match(busy.stderr, new RegExp(`campaign ${started.id}`));

    const cancel = await rekey(stack.config, ['cancel', started.id]);
    assert.equal(cancel.code, 0, cancel.stderr);
    const inScope = await fx.run(['retire', other.keyId, '--campaign', started.id, '--json']);
    assert.equal(inScope.code, 3, inScope.stderr);
    const proof = (await fx.events(other.arn)).find((e) => e.event === 'key.retire-refused')!.proof;
    assert.deepEqual(proof.scopes, [{ bucket, prefix: 'c/' }]);
    assert.deepEqual(proof.campaigns, [started.id]);
    assert.equal(proof.remaining, 2);
  });
});
