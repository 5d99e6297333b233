import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  createMetrics,
  registerScrapeTarget,
  startMetricsServer,
  type MetricsServer,
  type RekeyMetrics,
} from '../../../src/metrics/index.js';
import { dashboardQueries, queryPrometheus, waitForSeries, type PromSample } from '../../helpers/prometheus.js';
import { uniqueName } from '../../helpers/stack.js';

const RETIRING_KEY = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

/** What a worker would have handled; none of it may reach Prometheus. */
const BUCKET = 'rekey-payroll-bucket';
const OBJECT_KEY = 'customers/4711/ledger 2024.csv';

function targetsDir(): string {
  const dir = process.env.REKEY_PROMETHEUS_TARGETS_DIR;
  if (!dir) throw new Error('REKEY_PROMETHEUS_TARGETS_DIR is not set: eval "$(bash scripts/stack.sh env)"');
  return dir;
}

/** Exactly one series, and its value. */
function only(samples: readonly PromSample[]): number {
  assert.equal(samples.length, 1, JSON.stringify(samples));
  return samples[0]!.value;
}

describe('metrics scraped by the real Prometheus', () => {
  const instance = uniqueName('metrics');
  const campaign = uniqueName('campaign');
  const own = `instance="${instance}"`;
  let metrics: RekeyMetrics;
  let server: MetricsServer | undefined;
  let unregister: (() => Promise<void>) | undefined;

  /** The value of `expr` for this test's target, once Prometheus has it. */
  const scraped = async (expr: string) => only(await waitForSeries(expr, (s) => s.length > 0));

  before(async () => {
    metrics = createMetrics();
    record(metrics, campaign);
    server = await startMetricsServer({ port: 0, registry: metrics.registry });
    unregister = await registerScrapeTarget({
      dir: targetsDir(),
      name: instance,
      address: `127.0.0.1:${server.port}`,
      labels: { instance },
    });
    await waitForSeries(`rekey_objects_total{${own}}`, (s) => s.length >= 3);
  });

  after(async () => {
    await unregister?.();
    await server?.close();
  });

  test('objects by outcome and reason, bytes and durations', async () => {
    const c = `${own}, campaign="${campaign}"`;
    assert.equal(await scraped(`rekey_objects_total{${c}, mode="rekey", outcome="rotated", reason=""}`), 1);
    assert.equal(await scraped(`rekey_objects_total{${c}, outcome="skipped", reason="already-rotated"}`), 1);
    assert.equal(await scraped(`rekey_objects_total{${c}, outcome="failed", reason="tag-mismatch"}`), 1);
    assert.equal(await scraped(`rekey_read_bytes_total{${c}, mode="rekey"}`), 1_000);
    assert.equal(await scraped(`rekey_written_bytes_total{${c}, mode="rekey"}`), 1_040);
    assert.equal(await scraped(`rekey_object_duration_seconds_count{${c}, outcome="failed"}`), 1);
    assert.equal(await scraped(`rekey_object_duration_seconds_bucket{${c}, outcome="failed", le="1"}`), 0);
    assert.equal(await scraped(`rekey_object_duration_seconds_bucket{${c}, outcome="failed", le="2.5"}`), 1);
    assert.equal(await scraped(`rekey_objects_in_flight{${c}}`), 1);
  });

  test('KMS and S3 calls', async () => {
    assert.equal(await scraped(`rekey_kms_requests_total{${own}, operation="ReEncrypt", result="ok"}`), 2);
    assert.equal(await scraped(`rekey_kms_requests_total{${own}, operation="ReEncrypt", result="kms-throttled"}`), 1);
    assert.equal(await scraped(`rekey_kms_throttles_total{${own}, operation="ReEncrypt"}`), 1);
    assert.equal(await scraped(`rekey_kms_request_duration_seconds_count{${own}, operation="ReEncrypt"}`), 3);
    assert.equal(await scraped(`rekey_s3_requests_total{${own}, operation="HeadObject", result="ok"}`), 3);
    assert.equal(await scraped(`rekey_s3_retries_total{${own}, operation="PutObject"}`), 2);
    assert.equal(await scraped(`rekey_s3_requests_total{${own}, operation="Other"}`), 1);
  });

  test('queue, campaign and thread-pool gauges from the providers', async () => {
    const c = `${own}, campaign="${campaign}"`;
    assert.equal(await scraped(`rekey_queue_jobs{${own}, state="waiting"}`), 7);
    assert.equal(await scraped(`rekey_queue_jobs{${own}, state="delayed"}`), 0);
    assert.equal(await scraped(`rekey_campaign_objects_planned{${c}}`), 10);
    assert.equal(await scraped(`rekey_campaign_objects_done{${c}}`), 3);
    assert.equal(await scraped(`rekey_campaign_progress_ratio{${c}}`), 0.3);
    assert.equal(await scraped(`rekey_campaign_eta_seconds{${c}}`), 120);
    assert.equal(await scraped(`rekey_thread_pool_threads{${own}}`), 4);
    assert.equal(await scraped(`rekey_thread_pool_active_streams{${own}}`), 2);
    // The fake pool is busy half of its capacity in real time; each scrape measures about that.
    const utilization = await scraped(`rekey_thread_pool_utilization_ratio{${own}}`);
    assert.ok(utilization > 0.4 && utilization < 0.6, String(utilization));
  });

  test('retiring keys: refusals, state and deletion date from the provider', async () => {
    const k = `${own}, key="${RETIRING_KEY}"`;
    assert.equal(await scraped(`rekey_retiring_key_refusals_total{${k}}`), 2);
    assert.equal(await scraped(`rekey_retiring_key_state{${k}, state="pending-deletion"}`), 1);
    assert.equal(await scraped(`rekey_retiring_key_deletion_timestamp_seconds{${k}}`), Date.UTC(2030, 0, 31) / 1000);
    assert.equal(await scraped(`rekey_retiring_key_refusals_total{${own}, key="${RETIRING_KEY}-2"}`), 0);
    assert.deepEqual(await queryPrometheus(`rekey_retiring_key_deletion_timestamp_seconds{${own}, key="${RETIRING_KEY}-2"}`), [], 'a key only disabled has no deletion date');
  });

  test("Node's default metrics, per worker", async () => {
    assert.ok((await scraped(`process_resident_memory_bytes{${own}}`)) > 0);
    assert.ok((await scraped(`process_cpu_seconds_total{${own}}`)) > 0);
    assert.ok((await scraped(`nodejs_heap_size_used_bytes{${own}}`)) > 0);
  });

  test('no label of any series holds the bucket or the object key', async () => {
    const series = await queryPrometheus(`{${own}}`);
    assert.ok(series.length > 50, `only ${series.length} series`);
    for (const { metric } of series) {
      for (const [label, value] of Object.entries(metric)) {
        for (const secret of [OBJECT_KEY, BUCKET, '4711', 'ledger']) {
          assert.ok(!value.includes(secret), `${metric.__name__}{${label}="${value}"} holds ${secret}`);
        }
      }
    }
  });

  test('every dashboard panel returns data for the campaign', async () => {
    // Rates need two samples in the window: wait for the second scrape, at a 1 s scrape interval.
    for (const query of dashboardQueries({ campaign, rateInterval: '10s' })) {
      await waitForSeries(query.expr, (s) => s.length > 0).catch((err: unknown) => {
        throw new Error(`panel "${query.panel}" (${query.refId}) has no data: ${(err as Error).message}`);
      });
    }
  });
});

/** A worker's day in miniature; the object key and bucket appear wherever a careless caller might pass them. */
function record(metrics: RekeyMetrics, campaign: string): void {
  const rotated = metrics.objectStarted({ campaign, mode: 'rekey' });
  rotated.done({ outcome: 'rotated', bytesRead: 1_000, bytesWritten: 1_040 });
  metrics.objectStarted({ campaign, mode: 'rekey' });
  metrics.objectDone({ campaign, mode: 'rewrap', outcome: 'skipped', reason: 'already-rotated', seconds: 0.004 });
  metrics.objectDone({ campaign, mode: 'rekey', outcome: 'failed', reason: 'tag-mismatch', seconds: 1.5 });

  metrics.kms.onCall({ operation: 'ReEncrypt', result: 'ok', seconds: 0.012 });
  metrics.kms.onCall({ operation: 'ReEncrypt', result: 'ok', seconds: 0.015 });
  metrics.kms.onCall({ operation: 'ReEncrypt', result: 'kms-throttled', seconds: 0.003 });
  for (let i = 0; i < 3; i += 1) metrics.s3.onCall({ operation: 'HeadObject', result: 'ok' });
  metrics.s3.onCall({ operation: 'PutObject', result: 'ok', retries: 2 });
  metrics.s3.onCall({ operation: `${BUCKET}/${OBJECT_KEY}`, result: 's3-error' });

  metrics.provideQueueCounts(async () => ({ waiting: 7, active: 2, completed: 5 }));
  metrics.provideCampaignProgress(async () => [{ campaign, planned: 10, done: 3, etaSeconds: 120, remaining: { object: 1, 'noncurrent-version': 0, 'instruction-file': 0, 'orphan-instruction-file': 0, unreadable: 0 } }]);
  metrics.provideRetiringKeys(async () => [
    { key: RETIRING_KEY, state: 'pending-deletion', refusals: 2, deletionDate: Date.UTC(2030, 0, 31) },
    { key: `${RETIRING_KEY}-2`, state: 'disabled', refusals: 0 },
  ]);
  const started = performance.now() / 1000;
  metrics.provideThreadPool(() => ({
    threads: 4,
    busySeconds: (performance.now() / 1000 - started) * 4 * 0.5,
    activeStreams: 2,
  }));
}
