import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { seedObjects } from '../../scripts/seed/seed.js';
import { rekey, rekeyJson, startWorker, stopWorker } from '../helpers/cli.js';
import { dashboardQueries, queryPrometheus, waitForSeries } from '../helpers/prometheus.js';
import { freshBucket, freshKmsKey, openStack, type TestStack } from '../helpers/stack.js';

/**
 * A real Prometheus (the stack's) scrapes a real worker through a rewrap and a rekey campaign; then
 * every expression of every dashboard panel must return data.
 */
describe('the Grafana dashboard shows real numbers from real workers', () => {
  let stack: TestStack;
  let worker: ReturnType<typeof startWorker>;
  const campaigns: string[] = [];

  before(async () => {
    stack = openStack();
    const oldKey = await freshKmsKey(stack.kms, 'old');
    const newKey = await freshKmsKey(stack.kms, 'new');
    const bucket = await freshBucket(stack.s3);
    await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'small/', count: 200, kmsKeyId: oldKey.keyId, sizes: [100, 3000], objectsPerDataKey: 10 });
    await seedObjects(stack.s3, stack.kms, { bucket, prefix: 'big/', count: 6, kmsKeyId: oldKey.keyId, sizes: [6 * 1024 * 1024] });
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'small/plain', Body: 'x' }));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'small/broken', Body: 'x', Metadata: { 'x-amz-key-v2': 'AAAA', 'x-amz-iv': 'bad' } }));

    // A key in retirement, pending deletion, for the key-retirement panels (moto: no object is under it).
    const retiring = await freshKmsKey(stack.kms, 'retiring');
    assert.equal((await rekey(stack.config, ['retire', retiring.keyId, '--bucket', bucket, '--prefix', 'none/'])).code, 0);
    const eightDaysOn = { REKEY_RETIREMENT_NOW: new Date(Date.now() + 8 * 86_400_000).toISOString() };
    const scheduled = await rekey(stack.config, ['retire', retiring.keyId, '--schedule-deletion', '--pending-days', '7', '--probe-key', newKey.keyId], eightDaysOn);
    assert.equal(scheduled.code, 0, scheduled.stderr);

    worker = startWorker(stack.config, ['--metrics-port', '0', '--concurrency', '2', '--threads', '2']);
    for (const [prefix, mode] of [['small/', 'rewrap'], ['big/', 'rekey']] as const) {
      const { id } = await rekeyJson<{ id: string }>(stack.config, [
        'start', '--bucket', bucket, '--prefix', prefix, '--mode', mode, '--target-key', newKey.keyId, '--batch-size', '20', '--json',
      ]);
      campaigns.push(id);
    }
    for (const id of campaigns) {
      for (;;) {
        const s = await rekeyJson<CampaignStatus>(stack.config, ['status', id, '--json']);
        if (s.finishedAt !== undefined) break;
        await sleep(500);
      }
    }
  });
  after(async () => {
    await stopWorker(worker);
    await stack.close();
  });

  test('the worker is scraped and its campaign counters are right', async () => {
    const [rewrap] = campaigns;
    const rotated = await waitForSeries(`sum(rekey_objects_total{campaign="${rewrap}", outcome="rotated"})`, (s) => s[0]?.value === 200, 30_000);
    assert.equal(rotated[0]!.value, 200);
    const bad = await queryPrometheus(`sum by (outcome, reason) (rekey_objects_total{campaign="${rewrap}", outcome!="rotated"})`);
    assert.deepEqual(
      Object.fromEntries(bad.map((s) => [`${s.metric.outcome}:${s.metric.reason}`, s.value])),
      { 'skipped:not-encrypted': 1, 'failed:bad-metadata': 1 },
    );
  });

  test('every panel of the dashboard returns data', async () => {
    const queries = dashboardQueries({ campaign: campaigns, rateInterval: '5m' });
    assert.ok(queries.length >= 15);
    const empty: string[] = [];
    for (const q of queries) {
      try {
        await waitForSeries(q.expr, (s) => s.length > 0, 20_000);
      } catch {
        empty.push(`${q.panel} [${q.refId}]: ${q.expr}`);
      }
    }
    assert.deepEqual(empty, [], 'panels without data');
  });

  test('no label holds an object key, a bucket or key material', async () => {
    const series = await queryPrometheus('{__name__=~"rekey_.+"}');
    const labels = series.flatMap((s) => Object.values(s.metric));
    assert.ok(labels.every((v) => !v.includes('small/') && !v.includes('big/') && !v.startsWith('rekey-b-')));
  });
});
