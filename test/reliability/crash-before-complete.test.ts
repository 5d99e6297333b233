import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import type { CampaignStore } from '../../src/campaign/store.js';
import { UploadJournals } from '../../src/campaign/upload-journals.js';
import type { ObjectOutcome } from '../../src/rotate/outcome.js';
import { FaultProxy } from '../helpers/kms-fault-proxy.js';
import { freshBucket, strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertAllDecrypt, assertOneOutcomeEach, openCampaignSuite, openUploads, rawObject, startCampaign, waitForCampaign, type Expected, type RawObject } from '../helpers/campaign.js';
import { WorkerFleet, type FleetWorker } from '../helpers/fleet.js';
import { s3KeyOf, s3Operation, type S3Operation } from '../helpers/s3-ops.js';
import { putSealed, seal } from '../helpers/sealed.js';

const MiB = 1024 * 1024;

/**
 * docs/design.md §4.1 at its sharpest point: a worker is SIGKILLed after its last part upload and
 * before CompleteMultipartUpload. A fault proxy in front of the strict S3 (versitygw, which enforces
 * If-Match on completion) holds the completion requests, so the kill lands exactly there.
 */
describe('a worker killed between its last part upload and CompleteMultipartUpload', () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite(strictS3()));
  });
  after(() => stack.close());

  test('the original stays byte-identical until a replacement completes; a new worker aborts the leftover and finishes', async () => {
    const bucket = await freshBucket(stack.s3);
    // Two multipart-sized objects: the completion of one never reaches S3 (the request died with the
    // worker), the other's reaches S3 after the worker is dead (it was already on the wire).
    const keys = ['dropped', 'landed'];
    const expected: Expected[] = [];
    for (const key of keys) {
      const sealed = await seal(stack.kms, randomBytes(20 * MiB + 123), { kmsKeyId: oldKey.keyId, format: key === 'dropped' ? 'v2' : 'v3' });
      await putSealed(stack.s3, bucket, key, sealed);
      expected.push({ key, sha256: sealed.plaintextSha256 });
    }
    const before = new Map<string, RawObject>();
    for (const key of keys) before.set(key, await rawObject(stack.s3, bucket, key));

    await withDoomedWorker({ stack, store, bucket, targetKey: newKey.keyId, held: 'CompleteMultipartUpload' }, async ({ id, proxy, fleet, doomed, finish }) => {
      const held = [await proxy.nextHeld(90_000), await proxy.nextHeld(90_000)];
      const heldFor = new Map(held.map((h) => [s3KeyOf(h.request.path), h]));
      assert.deepEqual([...heldFor.keys()].sort(), [...keys].sort());

      assert.equal((await openUploads(stack.s3, bucket)).length, 2, 'every part is uploaded, no upload is complete');
      assert.equal((await new UploadJournals(stack.redis, stack.config.redisPrefix).of(id).open()).length, 2, 'both uploads are journaled before the kill');
      await fleet.kill(doomed);
      for (const key of keys) assert.deepEqual(await rawObject(stack.s3, bucket, key), before.get(key), `${key} is untouched while its replacement is pending`);

      proxy.release(heldFor.get('dropped')!, 'drop');
      proxy.release(heldFor.get('landed')!, 'forward');
      await untilChanged(stack, bucket, 'landed', before.get('landed')!);
      assert.deepEqual(await rawObject(stack.s3, bucket, 'dropped'), before.get('dropped'), 'an upload that never completed changes nothing');
      assert.equal((await openUploads(stack.s3, bucket)).length, 1, 'the dropped upload is left open by the dead worker');

      const { final, outcomes } = await finish(keys);
      assert.equal(outcomes.get('dropped')?.outcome, 'rotated', outcomes.get('dropped')?.message);
      // The completion that landed after the kill rotated the object; it is never rotated twice, and its
      // record comes from the write intent the dead worker left: rotated, from the old key.
      const landed = outcomes.get('landed')!;
      assert.deepEqual([landed.outcome, landed.oldKeyId, landed.newKeyId], ['rotated', oldKey.arn, newKey.arn], landed.message);
      assert.match(landed.message, /write intent/);
      assert.equal(final.failed, 0);
      assert.deepEqual(await openUploads(stack.s3, bucket), [], 'the leftover upload was aborted');
      assert.deepEqual(await new UploadJournals(stack.redis, stack.config.redisPrefix).of(id).open(), [], 'and its journal entry cleared');
      assert.deepEqual(await assertAllDecrypt(stack, bucket, expected), new Map([[newKey.arn, 2]]));
    });
  });
});

/**
 * The other end of the window: S3 creates the upload, but the worker dies before the answer arrives,
 * so the upload id never reaches the journal.
 */
describe('a worker killed while its CreateMultipartUpload is on the wire', () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite(strictS3()));
  });
  after(() => stack.close());

  test('the object is rotated; the part-less upload S3 made for the dead worker is left, never guessed at', async () => {
    const bucket = await freshBucket(stack.s3);
    const sealed = await seal(stack.kms, randomBytes(17 * MiB), { kmsKeyId: oldKey.keyId, format: 'v2' });
    await putSealed(stack.s3, bucket, 'big', sealed);
    const before = await rawObject(stack.s3, bucket, 'big');
    await withDoomedWorker({ stack, store, bucket, targetKey: newKey.keyId, held: 'CreateMultipartUpload' }, async ({ proxy, fleet, doomed, finish }) => {
      const held = await proxy.nextHeld(90_000);
      await fleet.kill(doomed);
      proxy.release(held, 'forward');
      await untilUploads(stack, bucket, 1);
      assert.deepEqual(await rawObject(stack.s3, bucket, 'big'), before);

      const leftover = await openUploads(stack.s3, bucket);
      const { outcomes } = await finish(['big']);
      assert.equal(outcomes.get('big')?.outcome, 'rotated', outcomes.get('big')?.message);
      // Its id never reached the journal, so it cannot be told from another writer's upload of the key
      // (cleanup.test.ts): it stays, without parts, for the bucket's AbortIncompleteMultipartUpload rule.
      assert.deepEqual(await openUploads(stack.s3, bucket), leftover, 'only the unjournaled upload is open');
      assert.deepEqual(await assertAllDecrypt(stack, bucket, [{ key: 'big', sha256: sealed.plaintextSha256 }]), new Map([[newKey.arn, 1]]));
    });
  });
});

interface DoomedSpec {
  readonly stack: TestStack;
  readonly store: CampaignStore;
  readonly bucket: string;
  readonly targetKey: string;
  /** The request the doomed worker's proxy holds, every time it is sent. */
  readonly held: S3Operation;
}

interface DoomedRun {
  readonly id: string;
  readonly proxy: FaultProxy;
  readonly fleet: WorkerFleet;
  /** The first worker, whose S3 requests go through `proxy`: the one the test kills. */
  readonly doomed: FleetWorker;
  /** A new worker, straight to S3, takes over; resolves when the campaign has ended with one outcome per key. */
  readonly finish: (keys: readonly string[]) => Promise<{ final: CampaignStatus; outcomes: Map<string, ObjectOutcome> }>;
}

/** Starts a rekey campaign of `spec.bucket` with one doomed worker; every worker and the proxy are stopped after `body`. */
async function withDoomedWorker(spec: DoomedSpec, body: (run: DoomedRun) => Promise<void>): Promise<void> {
  const { stack, store, bucket } = spec;
  const proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  proxy.inject({ fault: { kind: 'hold' }, match: s3Operation(spec.held) });
  const fleet = new WorkerFleet({ config: stack.config });
  try {
    const { id } = await startCampaign(stack.config, { bucket, mode: 'rekey', targetKey: spec.targetKey });
    const doomed = fleet.start({ AWS_ENDPOINT_URL_S3: proxy.url });
    const finish = async (keys: readonly string[]) => {
      fleet.start();
      const final = await waitForCampaign(store, id, { timeoutMs: 120_000 });
      return { final, outcomes: await assertOneOutcomeEach(store, id, stack.s3, bucket, keys) };
    };
    await body({ id, proxy, fleet, doomed, finish });
  } finally {
    await fleet.stopAll();
    await proxy.close();
  }
}

async function untilUploads(stack: TestStack, bucket: string, count: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await openUploads(stack.s3, bucket)).length === count) return;
    await sleep(100);
  }
  throw new Error(`${bucket} never had ${count} open uploads`);
}

async function untilChanged(stack: TestStack, bucket: string, key: string, was: RawObject): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await rawObject(stack.s3, bucket, key)).etag !== was.etag) return;
    await sleep(100);
  }
  throw new Error(`${key} did not change after its completion was forwarded`);
}
