import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ListPartsCommand } from '@aws-sdk/client-s3';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import type { CampaignStore } from '../../src/campaign/store.js';
import { UploadJournals } from '../../src/campaign/upload-journals.js';
import type { SeededObject } from '../../scripts/seed/seed.js';
import { FaultProxy, seededRandom, type HeldRequest } from '../helpers/kms-fault-proxy.js';
import { strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertAllDecrypt, assertOneOutcomeEach, openCampaignSuite, openUploads, seedPerMode, startPerMode, waitForCampaign, type PerMode } from '../helpers/campaign.js';
import { WorkerFleet, type FleetWorker } from '../helpers/fleet.js';
import { s3Operation } from '../helpers/s3-ops.js';

const LONG = process.env.REKEY_LONG_TESTS === '1';
const MiB = 1024 * 1024;

/** CI: a few hundred objects and ten kills; REKEY_LONG_TESTS=1: 2,000+ objects and 50+ kills. */
const PLAN = LONG
  ? { rewrapObjects: 1000, rekeyObjects: 1200, kills: 60, multipartEvery: 40, timeoutMs: 45 * 60_000 }
  : { rewrapObjects: 200, rekeyObjects: 200, kills: 10, multipartEvery: 25, timeoutMs: 6 * 60_000 };
const LIVE_WORKERS = 2;

interface Armed {
  readonly worker: FleetWorker;
  readonly proxy: FaultProxy;
}

/**
 * Kills a worker whenever the campaigns pass the next threshold, so the kills spread over the whole
 * run. Every other kill waits for a CompleteMultipartUpload (held by the worker's own fault proxy)
 * and lands between the last part upload and the completion; the held request is then dropped or
 * forwarded, as if it died with the worker or was already on the wire.
 */
class Chaos {
  readonly workers: Armed[] = [];
  killsBeforeComplete = 0;
  forwardedAfterKill = 0;
  private readonly random = seededRandom(7);

  constructor(
    readonly fleet: WorkerFleet,
    private readonly target: string,
  ) {}

  async startWorker(): Promise<void> {
    const proxy = await FaultProxy.start({ target: this.target });
    this.workers.push({ worker: this.fleet.start({ AWS_ENDPOINT_URL_S3: proxy.url }), proxy });
  }

  live(): Armed[] {
    return this.workers.filter((w) => w.worker.child.exitCode === null && w.worker.child.signalCode === null);
  }

  async killOne(atCompletion: boolean): Promise<void> {
    const live = this.live();
    const victim = atCompletion ? await this.heldCompletion(live) : undefined;
    if (victim) {
      await this.fleet.kill(victim.armed.worker);
      this.killsBeforeComplete += 1;
      const forward = this.random() < 0.5;
      if (forward) this.forwardedAfterKill += 1;
      victim.armed.proxy.release(victim.held, forward ? 'forward' : 'drop');
    } else {
      await this.fleet.kill(live[Math.floor(this.random() * live.length)]!.worker);
    }
    await this.startWorker();
  }

  /** Arms every live worker's proxy to hold one completion; the first held is the victim. */
  private async heldCompletion(live: Armed[]): Promise<{ armed: Armed; held: HeldRequest } | undefined> {
    for (const a of live) a.proxy.inject({ fault: { kind: 'hold' }, match: s3Operation('CompleteMultipartUpload'), times: 1 });
    let first: { armed: Armed; held: HeldRequest } | undefined;
    for (const deadline = Date.now() + 20_000; !first && Date.now() < deadline; await sleep(20)) {
      const armed = live.find((a) => a.proxy.held.length > 0);
      if (armed) first = { armed, held: armed.proxy.held[0]! };
    }
    for (const a of live) {
      a.proxy.clearFaults();
      for (const held of a.proxy.held) if (held !== first?.held) a.proxy.release(held, 'forward');
    }
    return first;
  }

  async close(): Promise<void> {
    await this.fleet.stopAll();
    await Promise.all(this.workers.map((w) => w.proxy.close()));
  }
}

describe(`crash test: ${PLAN.kills} SIGKILLs of workers during a rewrap and a rekey campaign`, () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;
  let buckets: PerMode<string>;
  let seeded: PerMode<SeededObject[]>;

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite(strictS3()));
    const sizes = (every: number) => Array.from({ length: every }, (_, i) => (i === every - 1 ? 17 * MiB + 5 : [0, 1, 700, 4096, 65_537, 300_000][i % 6]!));
    ({ buckets, seeded } = await seedPerMode(stack, (mode) => ({
      count: mode === 'rewrap' ? PLAN.rewrapObjects : PLAN.rekeyObjects,
      kmsKeyId: oldKey.keyId,
      sizes: sizes(PLAN.multipartEvery),
      objectsPerDataKey: 3,
      instructionFileEvery: 11,
      context: { suite: 'crash' },
      concurrency: 8,
    })));
  });
  after(() => stack.close());

  test('every object ends with one outcome and decrypts to its original bytes; no upload is left open', { timeout: PLAN.timeoutMs + 10 * 60_000 }, async () => {
    const chaos = new Chaos(new WorkerFleet({ config: stack.config }), stack.config.s3Endpoint!);
    try {
      const ids = await startPerMode(stack.config, buckets, newKey.keyId);
      for (let i = 0; i < LIVE_WORKERS; i++) await chaos.startWorker();
      const total = PLAN.rewrapObjects + PLAN.rekeyObjects;
      // Thresholds between 3% and 85% of all objects done, so every kill lands mid-run.
      const thresholds = Array.from({ length: PLAN.kills }, (_, i) => Math.floor(total * (0.03 + (0.82 * i) / PLAN.kills)));
      const done = async () => (await store.status(ids.rewrap)).done + (await store.status(ids.rekey)).done;
      for (const [i, threshold] of thresholds.entries()) {
        while ((await done()) < threshold) await sleep(100);
        await chaos.killOne(i % 2 === 1);
      }
      const finals: Record<string, CampaignStatus> = {};
      for (const mode of ['rewrap', 'rekey'] as const) finals[mode] = await waitForCampaign(store, ids[mode], { timeoutMs: PLAN.timeoutMs });

      assert.equal(chaos.fleet.kills, PLAN.kills);
      assert.ok(chaos.killsBeforeComplete >= Math.min(2, PLAN.kills / 4), `only ${chaos.killsBeforeComplete} kills landed before a completion`);
      for (const mode of ['rewrap', 'rekey'] as const) {
        const keys = seeded[mode].map((o) => o.key);
        const outcomes = await assertOneOutcomeEach(store, ids[mode], stack.s3, buckets[mode], keys);
        // Instruction files move with their object (rekey moves them into metadata, so one may be gone when its entry is reached).
        // A write that landed before its worker died is recorded from its intent: rotated, with the key it moved from.
        for (const o of outcomes.values()) assert.deepEqual([o.outcome, o.oldKeyId], ['rotated', oldKey.arn], `${o.ref.key}: ${o.reason} ${o.message}`);
        assert.equal(finals[mode]!.byReason['skipped:already-rotated'] ?? 0, 0, `${mode}: ${JSON.stringify(finals[mode]!.byReason)}`);
        // A worker killed while its CreateMultipartUpload was on the wire leaves an upload it never heard
        // of: rekey cannot tell it from another writer's, so it is left to the lifecycle rule (README).
        // It holds no part, so nothing of the object is stored in it.
        for (const u of await openUploads(stack.s3, buckets[mode])) {
          const parts = await stack.s3.send(new ListPartsCommand({ Bucket: buckets[mode], Key: u.key, UploadId: u.uploadId }));
          assert.deepEqual(parts.Parts ?? [], [], `${mode}: ${u.key}: only a part-less upload may be left open`);
        }
        assert.deepEqual(await new UploadJournals(stack.redis, stack.config.redisPrefix).of(ids[mode]).open(), []);
        const under = await assertAllDecrypt(stack, buckets[mode], seeded[mode]);
        assert.deepEqual([...under.keys()], [newKey.arn], `${mode}: every object is under the new key`);
      }
      report(chaos, finals);
    } finally {
      await chaos.close();
    }
  });
});

function report(chaos: Chaos, finals: Record<string, CampaignStatus>): void {
  const line = {
    kills: chaos.fleet.kills,
    killsBeforeComplete: chaos.killsBeforeComplete,
    forwardedAfterKill: chaos.forwardedAfterKill,
    workersStarted: chaos.workers.length,
    outcomes: Object.fromEntries(Object.entries(finals).map(([mode, s]) => [mode, { planned: s.planned, rotated: s.rotated, byReason: s.byReason, seconds: ((s.finishedAt ?? 0) - s.createdAt) / 1000 }])),
  };
  process.stdout.write(`# crash-figures ${JSON.stringify(line)}\n`);
}
