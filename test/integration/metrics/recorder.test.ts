import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { KmsObserver } from '../../../src/kms/batcher.js';
import {
  createMetrics,
  registerScrapeTarget,
  startMetricsServer,
  type CampaignProgress,
  type RekeyMetrics,
} from '../../../src/metrics/index.js';
import { parseExposition, valueOf, type Sample } from '../../helpers/exposition.js';

/** A clock the test moves by hand, so durations, utilisation and ETA are exact. */
function manualClock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (seconds: number) => void (now += seconds) };
}

async function scrape(metrics: RekeyMetrics): Promise<Sample[]> {
  return parseExposition(await metrics.registry.metrics());
}

describe('the metrics recorder', () => {
  test('objectStarted counts the object in flight, times it and records it once', async () => {
    const clock = manualClock();
    const metrics = createMetrics({ now: clock.now });
    const object = metrics.objectStarted({ campaign: 'c1', mode: 'rekey' });

    let samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_objects_in_flight', { campaign: 'c1' }), 1);
    // Zero from the start, so rate() also counts the first object and its bytes.
    assert.equal(valueOf(samples, 'rekey_objects_total', { campaign: 'c1', outcome: 'rotated' }), 0);
    assert.equal(valueOf(samples, 'rekey_read_bytes_total', { campaign: 'c1', mode: 'rekey' }), 0);

    clock.advance(2.5);
    object.done({ outcome: 'rotated', bytesRead: 100, bytesWritten: 120 });
    object.done({ outcome: 'failed', reason: 'internal', bytesRead: 1 });
    samples = await scrape(metrics);
    const labels = { campaign: 'c1', mode: 'rekey', outcome: 'rotated' };
    assert.equal(valueOf(samples, 'rekey_objects_in_flight', { campaign: 'c1' }), 0);
    assert.equal(valueOf(samples, 'rekey_objects_total', { ...labels, reason: '' }), 1);
    assert.equal(valueOf(samples, 'rekey_objects_total', { outcome: 'failed' }), undefined);
    assert.equal(valueOf(samples, 'rekey_read_bytes_total', { campaign: 'c1' }), 100);
    assert.equal(valueOf(samples, 'rekey_written_bytes_total', { campaign: 'c1' }), 120);
    assert.equal(valueOf(samples, 'rekey_object_duration_seconds_count', labels), 1);
    assert.equal(valueOf(samples, 'rekey_object_duration_seconds_sum', labels), 2.5);
    assert.equal(valueOf(samples, 'rekey_object_duration_seconds_bucket', { ...labels, le: '1' }), 0);
    assert.equal(valueOf(samples, 'rekey_object_duration_seconds_bucket', { ...labels, le: '2.5' }), 1);
  });

  test('object durations are bucketed from 5 ms to 10 min', async () => {
    const samples = await scrape(recordOne({ seconds: 0.001 }));
    const les = samples.filter((s) => s.name === 'rekey_object_duration_seconds_bucket').map((s) => s.labels.le);
    assert.equal(les[0], '0.005');
    assert.equal(les.at(-2), '600');
    assert.equal(les.at(-1), '+Inf');
  });

  test('objectDone: the reason is empty for rotated, and internal for a skip that names none', async () => {
    const metrics = createMetrics();
    metrics.objectDone({ campaign: 'c', mode: 'rewrap', outcome: 'rotated', reason: 'changed', seconds: 0.01 });
    metrics.objectDone({ campaign: 'c', mode: 'rewrap', outcome: 'skipped', seconds: 0.01 });
    metrics.objectDone({ campaign: 'c', mode: 'rewrap', outcome: 'failed', reason: 'tag-mismatch', seconds: 0.01 });
    const samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_objects_total', { outcome: 'rotated', reason: '' }), 1);
    assert.equal(valueOf(samples, 'rekey_objects_total', { outcome: 'skipped', reason: 'internal' }), 1);
    assert.equal(valueOf(samples, 'rekey_objects_total', { outcome: 'failed', reason: 'tag-mismatch' }), 1);
  });

  test('bytesMoved counts a stream as it goes', async () => {
    const metrics = createMetrics();
    metrics.bytesMoved({ campaign: 'c', mode: 'rekey', bytesRead: 10 });
    metrics.bytesMoved({ campaign: 'c', mode: 'rekey', bytesRead: 5, bytesWritten: 7 });
    const samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_read_bytes_total', { campaign: 'c' }), 15);
    assert.equal(valueOf(samples, 'rekey_written_bytes_total', { campaign: 'c' }), 7);
  });

  test('KMS calls: requests by result, latency, throttles from the result or the flag', async () => {
    const metrics = createMetrics();
    // The KMS batcher takes the observer as it is.
    const observer: KmsObserver = metrics.kms;
    observer.onCall?.({ operation: 'ReEncrypt', result: 'ok', seconds: 0.02 });
    observer.onCall?.({ operation: 'ReEncrypt', result: 'kms-throttled', seconds: 0.004 });
    metrics.kmsCall({ operation: 'GenerateDataKey', result: 'ok', seconds: 0.01, throttled: true });
    metrics.kmsCall({ operation: 'Decrypt', result: 'kms-denied', seconds: 0.01 });
    const samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_kms_requests_total', { operation: 'ReEncrypt', result: 'ok' }), 1);
    assert.equal(valueOf(samples, 'rekey_kms_requests_total', { operation: 'ReEncrypt', result: 'kms-throttled' }), 1);
    assert.equal(valueOf(samples, 'rekey_kms_requests_total', { operation: 'Decrypt', result: 'kms-denied' }), 1);
    assert.equal(valueOf(samples, 'rekey_kms_throttles_total', { operation: 'ReEncrypt' }), 1);
    assert.equal(valueOf(samples, 'rekey_kms_throttles_total', { operation: 'GenerateDataKey' }), 1);
    assert.equal(valueOf(samples, 'rekey_kms_throttles_total', { operation: 'Decrypt' }), 0);
    assert.equal(valueOf(samples, 'rekey_kms_request_duration_seconds_count', { operation: 'ReEncrypt' }), 2);
    const fastReEncrypt = { operation: 'ReEncrypt', le: '0.005' };
    assert.equal(valueOf(samples, 'rekey_kms_request_duration_seconds_bucket', fastReEncrypt), 1);
  });

  test('S3 calls: requests by result and retries', async () => {
    const metrics = createMetrics();
    metrics.s3.onCall({ operation: 'HeadObject', result: 'ok' });
    metrics.s3Call({ operation: 'UploadPart', result: 'ok', retries: 2 });
    metrics.s3Call({ operation: 'UploadPart', result: 's3-error', retries: 4 });
    const samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_s3_requests_total', { operation: 'HeadObject', result: 'ok' }), 1);
    assert.equal(valueOf(samples, 'rekey_s3_requests_total', { operation: 'UploadPart', result: 's3-error' }), 1);
    assert.equal(valueOf(samples, 'rekey_s3_retries_total', { operation: 'UploadPart' }), 6);
    assert.equal(valueOf(samples, 'rekey_s3_retries_total', { operation: 'HeadObject' }), 0);
  });

  test('an operation that is not an AWS API name never becomes a label', async () => {
    const metrics = createMetrics();
    const key = 'customers/4711/ledger.csv';
    metrics.s3Call({ operation: key, result: 'ok' });
    metrics.kmsCall({ operation: `Decrypt ${key}`, result: 'ok', seconds: 0.01 });
    const text = await metrics.registry.metrics();
    assert.ok(!text.includes('4711'));
    const samples = parseExposition(text);
    assert.equal(valueOf(samples, 'rekey_s3_requests_total', { operation: 'Other' }), 1);
    assert.equal(valueOf(samples, 'rekey_kms_requests_total', { operation: 'Other' }), 1);
  });

  test('exports the default Node metrics', async () => {
    const samples = await scrape(createMetrics());
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes']) {
      assert.ok(samples.some((s) => s.name === name), name);
    }
  });
});

describe('provided gauges', () => {
  test('queue counts: every state, a missing state as 0', async () => {
    const metrics = createMetrics();
    let counts: Record<string, number> = { waiting: 3, active: 1 };
    metrics.provideQueueCounts(async () => counts);
    let samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_queue_jobs', { state: 'waiting' }), 3);
    assert.equal(valueOf(samples, 'rekey_queue_jobs', { state: 'delayed' }), 0);
    assert.equal(samples.filter((s) => s.name === 'rekey_queue_jobs').length, 5);
    counts = { failed: 2 };
    samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_queue_jobs', { state: 'failed' }), 2);
    assert.equal(valueOf(samples, 'rekey_queue_jobs', { state: 'waiting' }), 0);
  });

  test('a failing provider clears its gauges and is counted; the scrape still succeeds', async () => {
    const metrics = createMetrics();
    let fail = false;
    metrics.provideCampaignProgress(() => {
      if (fail) throw new Error('Redis is gone');
      return [{ campaign: 'a', planned: 4, done: 1 }];
    });
    assert.equal(valueOf(await scrape(metrics), 'rekey_campaign_objects_planned', { campaign: 'a' }), 4);
    fail = true;
    await scrape(metrics);
    const samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_campaign_objects_planned', { campaign: 'a' }), undefined);
    assert.equal(valueOf(samples, 'rekey_metrics_provider_errors_total', { provider: 'campaign' }), 2);
  });

  test('one provider call per scrape, however many gauges it feeds', async () => {
    const metrics = createMetrics();
    let calls = 0;
    metrics.provideCampaignProgress(() => {
      calls += 1;
      return [{ campaign: 'a', planned: 4, done: 1 }];
    });
    await scrape(metrics);
    await scrape(metrics);
    assert.equal(calls, 2);
  });

  test('campaign progress: the ratio, and the ETA from the recent pace unless the provider gives one', async () => {
    const clock = manualClock();
    const metrics = createMetrics({ now: clock.now, etaWindowSeconds: 300 });
    let done = 0;
    metrics.provideCampaignProgress((): CampaignProgress[] => [
      { campaign: 'c', planned: 100, done },
      { campaign: 'given', planned: 10, done: 4, etaSeconds: 42 },
    ]);
    const eta = async () => valueOf(await scrape(metrics), 'rekey_campaign_eta_seconds', { campaign: 'c' });

    assert.equal(await eta(), undefined, 'no pace yet');
    clock.advance(10);
    done = 10;
    let samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_campaign_eta_seconds', { campaign: 'c' }), 90);
    assert.equal(valueOf(samples, 'rekey_campaign_progress_ratio', { campaign: 'c' }), 0.1);
    assert.equal(valueOf(samples, 'rekey_campaign_objects_done', { campaign: 'c' }), 10);
    assert.equal(valueOf(samples, 'rekey_campaign_eta_seconds', { campaign: 'given' }), 42);
    assert.equal(valueOf(samples, 'rekey_campaign_progress_ratio', { campaign: 'given' }), 0.4);

    clock.advance(400);
    assert.equal(await eta(), undefined, 'paused longer than the window: no pace to go by');
    clock.advance(10);
    done = 100;
    samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_campaign_eta_seconds', { campaign: 'c' }), 0);
    assert.equal(valueOf(samples, 'rekey_campaign_progress_ratio', { campaign: 'c' }), 1);
  });

  test('a removed provider takes its series with it', async () => {
    const metrics = createMetrics();
    const remove = metrics.provideCampaignProgress(() => [{ campaign: 'a', planned: 4, done: 1 }]);
    remove();
    assert.equal(valueOf(await scrape(metrics), 'rekey_campaign_objects_planned', { campaign: 'a' }), undefined);
  });

  test('thread-pool utilisation is busy time over threads × wall time between scrapes', async () => {
    const clock = manualClock();
    const metrics = createMetrics({ now: clock.now });
    let busySeconds = 100;
    const remove = metrics.provideThreadPool(() => ({ threads: 4, busySeconds, activeStreams: 3 }));
    const utilization = async () => valueOf(await scrape(metrics), 'rekey_thread_pool_utilization_ratio');

    clock.advance(2);
    busySeconds += 4;
    let samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_thread_pool_utilization_ratio'), 0.5);
    assert.equal(valueOf(samples, 'rekey_thread_pool_threads'), 4);
    assert.equal(valueOf(samples, 'rekey_thread_pool_active_streams'), 3);
    assert.equal(await utilization(), 0.5, 'a second scrape in the same instant keeps the ratio');
    clock.advance(1);
    busySeconds += 10;
    assert.equal(await utilization(), 1, 'clamped');
    clock.advance(1);
    assert.equal(await utilization(), 0, 'idle');

    remove();
    samples = await scrape(metrics);
    assert.equal(valueOf(samples, 'rekey_thread_pool_threads'), 0);
    assert.equal(valueOf(samples, 'rekey_thread_pool_utilization_ratio'), 0);
  });
});

describe('the metrics server', () => {
  test('serves /metrics in the Prometheus text format and /healthz', async () => {
    const metrics = recordOne({ seconds: 1 });
    const server = await startMetricsServer({ port: 0, registry: metrics.registry });
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${server.url}/metrics`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(valueOf(parseExposition(await res.text()), 'rekey_objects_total', { outcome: 'rotated' }), 1);

      const health = await fetch(`${server.url}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(await health.text(), 'ok\n');
      assert.equal((await fetch(`${server.url}/metrics`, { method: 'HEAD' })).status, 200);
      assert.equal((await fetch(`${server.url}/nope`)).status, 404);
      const post = await fetch(`${server.url}/metrics`, { method: 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET, HEAD');
    } finally {
      await server.close();
    }
  });

  test('/healthz answers 503 when the worker says it is unhealthy', async () => {
    const server = await startMetricsServer({ port: 0, registry: createMetrics().registry, health: async () => false });
    try {
      assert.equal((await fetch(`${server.url}/healthz`)).status, 503);
    } finally {
      await server.close();
    }
  });

  test('close() does not wait for an idle keep-alive connection', async () => {
    const server = await startMetricsServer({ port: 0, registry: createMetrics().registry });
    await new Promise<void>((resolve, reject) => {
      const req = request(`${server.url}/healthz`, { headers: { Connection: 'keep-alive' } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    const started = performance.now();
    await server.close();
    assert.ok(performance.now() - started < 1_000);
  });

  test('a port in use is an error, not a silent second server', async () => {
    const first = await startMetricsServer({ port: 0, registry: createMetrics().registry });
    try {
      await assert.rejects(startMetricsServer({ port: first.port, registry: createMetrics().registry }), {
        code: 'EADDRINUSE',
      });
    } finally {
      await first.close();
    }
  });
});

describe('registerScrapeTarget', () => {
  test('writes a file_sd file in place, without leftovers, and removes it (twice is fine)', async () => {
    const root = await mkdtemp(join(tmpdir(), 'rekey-sd-'));
    const dir = join(root, 'targets');
    try {
      const remove = await registerScrapeTarget({
        dir,
        name: 'worker-1',
        address: '127.0.0.1:9464',
        labels: { instance: 'worker-1', campaign_host: 'a' },
      });
      assert.deepEqual(await readdir(dir), ['worker-1.json']);
      assert.deepEqual(JSON.parse(await readFile(join(dir, 'worker-1.json'), 'utf8')), [
        { targets: ['127.0.0.1:9464'], labels: { instance: 'worker-1', campaign_host: 'a' } },
      ]);
      await remove();
      await remove();
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('refuses a name that leaves the folder, a bad label name or an address that is not host:port', async () => {
    const dir = tmpdir();
    await assert.rejects(registerScrapeTarget({ dir, name: '../x', address: '127.0.0.1:1' }), TypeError);
    await assert.rejects(registerScrapeTarget({ dir, name: 'x', address: 'http://127.0.0.1:1/metrics' }), TypeError);
    await assert.rejects(
      registerScrapeTarget({ dir, name: 'x', address: '127.0.0.1:1', labels: { 'in-stance': 'x' } }),
      TypeError,
    );
  });
});

function recordOne({ seconds }: { seconds: number }): RekeyMetrics {
  const metrics = createMetrics();
  metrics.objectDone({ campaign: 'c', mode: 'rewrap', outcome: 'rotated', seconds });
  return metrics;
}
