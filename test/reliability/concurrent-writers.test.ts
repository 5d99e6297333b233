import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { CampaignStore } from '../../src/campaign/store.js';
import { seedObjects } from '../../scripts/seed/seed.js';
import { FaultProxy, seededRandom } from '../helpers/kms-fault-proxy.js';
import { rekey } from '../helpers/cli.js';
import { sha256 } from '../helpers/s3ec.js';
import { freshBucket, strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { decryptObject } from '../helpers/verify.js';
import { assertOneOutcomeEach, openCampaignSuite, openUploads, outcomesOf, rawObject, startCampaign, waitForCampaign } from '../helpers/campaign.js';
import { WorkerFleet } from '../helpers/fleet.js';
import { s3Operation } from '../helpers/s3-ops.js';
import { putSealed, seal } from '../helpers/sealed.js';

const LONG = process.env.REKEY_LONG_TESTS === '1';
const OBJECTS = LONG ? 1000 : 240;

/** What the other writer last did to an object, and what must be there once the campaign is over. */
type Write =
  | { readonly kind: 'overwrite-s3ec'; readonly plaintextSha256: string }
  | { readonly kind: 'overwrite-plain'; readonly sha256: string }
  | { readonly kind: 'delete' };

/**
 * Writes to objects just ahead of the campaign's progress, so many writes land while a worker holds
 * the object between its read and its conditional write. Each object is written at most once.
 */
class OtherWriter {
  readonly writes = new Map<string, Write>();
  private readonly random = seededRandom(11);
  private stopped = false;

  constructor(
    private readonly stack: TestStack,
    private readonly bucket: string,
    private readonly keys: readonly string[],
    private readonly kmsKeyId: string,
  ) {}

  async run(progress: () => Promise<number>): Promise<void> {
    while (!this.stopped) {
      const ahead = (await progress()) + Math.floor(this.random() * 30);
      const key = this.keys[Math.min(ahead, this.keys.length - 1)]!;
      if (!this.writes.has(key)) await this.write(key);
      await sleep(40);
    }
  }

  stop(): void {
    this.stopped = true;
  }

  private async write(key: string): Promise<void> {
    const dice = this.random();
    const { s3 } = this.stack;
    if (dice < 0.55) {
      const sealed = await seal(this.stack.kms, randomBytes(700), { kmsKeyId: this.kmsKeyId, format: dice < 0.3 ? 'v2' : 'v3' });
      this.writes.set(key, { kind: 'overwrite-s3ec', plaintextSha256: sealed.plaintextSha256 });
      await putSealed(s3, this.bucket, key, sealed, { Metadata: { by: 'other-writer' } });
    } else if (dice < 0.7) {
      const body = randomBytes(300);
      this.writes.set(key, { kind: 'overwrite-plain', sha256: sha256(body) });
      // An instruction file left behind would still claim the plain object for every S3EC reader
      // (rekey then reports failed:tag-mismatch and writes nothing), so a careful writer drops it first.
      await s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: `${key}.instruction` }));
      await s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body }));
    } else {
      this.writes.set(key, { kind: 'delete' });
      await s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
      await s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: `${key}.instruction` }));
    }
  }
}

/** docs/design.md §4.2 under load: a campaign never undoes or resurrects another writer's work (versitygw). */
describe('other writers overwrite and delete objects during a campaign', () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite(strictS3()));
  });
  after(() => stack.close());

  for (const mode of ['rewrap', 'rekey'] as const) {
    test(`${mode}: their writes survive; the campaign reports each contested object skipped:changed or skipped:gone`, { timeout: 15 * 60_000 }, async () => {
      const bucket = await freshBucket(stack.s3);
      const seeded = await seedObjects(stack.s3, stack.kms, {
        bucket, count: OBJECTS, kmsKeyId: oldKey.keyId, sizes: [100, 20_000, 1_500_000], objectsPerDataKey: 2, instructionFileEvery: 5, concurrency: 8,
      });
      const keys = seeded.map((o) => o.key);
      // Slow conditional writes widen the window between a worker's read and its write.
      const proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
      proxy.inject({ fault: { kind: 'delay', ms: 250 }, match: s3Operation('CopyObject', 'PutObject', 'CompleteMultipartUpload') });
      const fleet = new WorkerFleet({ config: stack.config, env: () => ({ AWS_ENDPOINT_URL_S3: proxy.url }) });
      const writer = new OtherWriter(stack, bucket, keys, oldKey.keyId);
      try {
        const { id } = await startCampaign(stack.config, { bucket, mode, targetKey: newKey.keyId, batchSize: 10 });
        fleet.start();
        fleet.start();
        const writing = writer.run(async () => (await store.status(id)).done);
        const first = await waitForCampaign(store, id, { timeoutMs: 10 * 60_000 });
        writer.stop();
        await writing;

        // A writer that replaces an object and its instruction file in two steps can be caught between
        // them; rekey then sees an incomplete object, fails it and writes nothing. And moto answers a
        // conditional write racing another writer's delete or overwrite of the same key by dropping
        // the connection (the proxy's 502), which the object's retry budget ends as s3-error, where S3
        // answers 412 or 404. Only objects the writer touched may fail so, and a retry once the writer
        // is done settles them.
        const caughtBetween = (await outcomesOf(store, id, stack.s3)).filter((o) => o.outcome === 'failed');
        for (const o of caughtBetween) {
          const touched = writer.writes.has(o.ref.key) && seeded.find((s) => s.key === o.ref.key)!.instructionFile;
          const racing = writer.writes.has(o.ref.key) && o.reason === 's3-error';
          assert.ok((touched && ['missing-instruction-file', 'tag-mismatch'].includes(o.reason!)) || racing, `${o.ref.key}: ${o.reason} ${o.message}`);
        }
        if (caughtBetween.length > 0) {
          assert.equal((await rekey(stack.config, ['retry', id])).code, 0);
          await waitForCampaign(store, id, { timeoutMs: 5 * 60_000 });
        }

        const outcomes = await assertOneOutcomeEach(store, id, stack.s3, bucket, keys);
        const contested = new Map<string, number>();
        for (const key of keys) {
          const outcome = outcomes.get(key)!;
          const label = outcome.reason ? `${outcome.outcome}:${outcome.reason}` : outcome.outcome;
          const write = writer.writes.get(key);
          if (write === undefined) {
            assert.equal(label, 'rotated', `${key}: ${outcome.message}`);
            const d = await decryptObject(stack, bucket, key);
            assert.deepEqual([d.sha256, d.keyId], [seeded.find((o) => o.key === key)!.sha256, newKey.arn], key);
            continue;
          }
          assert.ok(['rotated', 'skipped:changed', 'skipped:gone', 'skipped:not-encrypted'].includes(label), `${key} after ${write.kind}: ${label} ${outcome.message}`);
          contested.set(label, (contested.get(label) ?? 0) + 1);
          await assertSurvived(stack, bucket, key, write);
        }
        assert.ok((contested.get('skipped:changed') ?? 0) + (contested.get('skipped:gone') ?? 0) > 0, `some writes raced a rotation: ${JSON.stringify([...contested])}`);
        assert.deepEqual(await openUploads(stack.s3, bucket), []);
        process.stdout.write(
          `# concurrency-figures ${JSON.stringify({ mode, objects: OBJECTS, writes: writer.writes.size, caughtBetweenSteps: caughtBetween.length, firstPassFailed: first.failed, outcomesOfContested: Object.fromEntries(contested) })}\n`,
        );
      } finally {
        writer.stop();
        await fleet.stopAll();
        await proxy.close();
      }
    });
  }
});

/** The other writer's last word stands: its content, or the object's absence. */
async function assertSurvived(stack: TestStack, bucket: string, key: string, write: Write): Promise<void> {
  switch (write.kind) {
    case 'delete':
      await assert.rejects(stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })), `${key} stays deleted`);
      return;
    case 'overwrite-plain':
      assert.equal((await rawObject(stack.s3, bucket, key)).sha256, write.sha256, `${key}: their plain bytes`);
      return;
    case 'overwrite-s3ec':
      assert.equal((await decryptObject(stack, bucket, key)).sha256, write.plaintextSha256, `${key}: their encrypted content`);
  }
}
