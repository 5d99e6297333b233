import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { CampaignStore } from '../../src/campaign/store.js';
import { seedObjects, type SeededObject } from '../../scripts/seed/seed.js';
import { freshBucket, strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertAllDecrypt, openCampaignSuite, startCampaign, waitForCampaign } from '../helpers/campaign.js';
import { sampleRss, WorkerFleet, type RssSample } from '../helpers/fleet.js';

const LONG = process.env.REKEY_LONG_TESTS === '1';
/** REKEY_LOAD_OBJECTS and REKEY_LOAD_MODE size a long run to the time at hand (docs/reliability.md). */
const OBJECTS = Number(process.env.REKEY_LOAD_OBJECTS ?? (LONG ? 100_000 : 1_000));
const MODE = (process.env.REKEY_LOAD_MODE ?? 'rekey') as 'rewrap' | 'rekey';
const WORKERS = 4;
const MiB = 1024 * 1024;
/** Allowed RSS growth of a worker over the second half of the run, and its ceiling. */
const GROWTH_BOUND = 48 * MiB;
const RSS_CEILING = 512 * MiB;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

interface WorkerMemory {
  readonly worker: number;
  readonly maxMiB: number;
  /** Median RSS of the second and of the last quarter of the run: steady memory shows no trend between them. */
  readonly secondQuarterMiB: number;
  readonly lastQuarterMiB: number;
}

function memoryOf(samples: readonly RssSample[], worker: number, durationMs: number): WorkerMemory {
  const mine = samples.filter((s) => s.worker === worker);
  const within = (from: number, to: number) => mine.filter((s) => s.atMs >= from * durationMs && s.atMs < to * durationMs).map((s) => s.rss);
  const mib = (b: number) => Math.round((b / MiB) * 10) / 10;
  return {
    worker,
    maxMiB: mib(Math.max(...mine.map((s) => s.rss))),
    secondQuarterMiB: mib(median(within(0.25, 0.5))),
    lastQuarterMiB: mib(median(within(0.75, 1))),
  };
}

/** Many small objects through four workers: objects per second, and worker memory that stays flat. */
describe(`load: ${OBJECTS} small objects, ${MODE}, through ${WORKERS} workers`, () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;
  let bucket: string;
  let seeded: SeededObject[];
  let seedSeconds: number;

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite(strictS3()));
    bucket = await freshBucket(stack.s3);
    const started = Date.now();
    seeded = await seedObjects(stack.s3, stack.kms, {
      bucket, count: OBJECTS, kmsKeyId: oldKey.keyId, sizes: [128, 700, 2048, 4096], objectsPerDataKey: 100, instructionFileEvery: 50, concurrency: 48,
    });
    seedSeconds = (Date.now() - started) / 1000;
  });
  after(() => stack.close());

  test('every object rotates; each worker’s memory stays within a bound in the second half', { timeout: 4 * 3600_000 }, async () => {
    const fleet = new WorkerFleet({ config: stack.config, args: ['--concurrency', '4', '--threads', '1'] });
    try {
      const { id } = await startCampaign(stack.config, { bucket, mode: MODE, targetKey: newKey.keyId, batchSize: 100, extra: ['--kms-rate', '2000'] });
      for (let i = 0; i < WORKERS; i++) fleet.start();
      const rss = sampleRss(fleet, LONG ? 1000 : 250);
      const final = await waitForCampaign(store, id, { timeoutMs: 3.5 * 3600_000 });
      rss.stop();

      // Every 50th object keeps its envelope in an instruction file, which is an entry of its own.
      const files = seeded.filter((o) => o.instructionFile).length;
      assert.equal(final.done, OBJECTS + files);
      assert.equal(final.rotated, OBJECTS, JSON.stringify(final.byReason));
      assert.equal((final.byReason['skipped:instruction-file'] ?? 0) + (final.byReason['skipped:gone'] ?? 0), files, JSON.stringify(final.byReason));
      const seconds = (final.finishedAt! - final.createdAt) / 1000;
      const memory = fleet.started.map((w) => memoryOf(rss.samples, w.index, seconds * 1000));
      const sample = seeded.filter((_, i) => i % Math.max(1, Math.floor(OBJECTS / 2000)) === 0);
      assert.deepEqual([...(await assertAllDecrypt(stack, bucket, sample)).keys()], [newKey.arn]);
      process.stdout.write(
        `# load-figures ${JSON.stringify({ mode: MODE, objects: OBJECTS, workers: WORKERS, seedSeconds, seconds, objectsPerSecond: Math.round((OBJECTS / seconds) * 10) / 10, rssSamples: rss.samples.length, memory, verifiedSample: sample.length })}\n`,
      );
      for (const m of memory) {
        assert.ok(m.maxMiB * MiB < RSS_CEILING, `worker ${m.worker} peaked at ${m.maxMiB} MiB`);
        // A run of a minute is mostly warm-up (JIT, pools, sockets); a trend needs the long run.
        if (LONG) assert.ok((m.lastQuarterMiB - m.secondQuarterMiB) * MiB < GROWTH_BOUND, `worker ${m.worker} grew from ${m.secondQuarterMiB} to ${m.lastQuarterMiB} MiB`);
      }
    } finally {
      await fleet.stopAll();
    }
  });
});
