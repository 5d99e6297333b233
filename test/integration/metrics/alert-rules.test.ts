import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { createMetrics, registerScrapeTarget, startMetricsServer } from '../../../src/metrics/index.js';
import { prometheusUrl, queryPrometheus, waitForSeries } from '../../helpers/prometheus.js';
import { uniqueName } from '../../helpers/stack.js';

const RULES = resolve(import.meta.dirname, '../../../grafana/alerts.yml');
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert: string }[] }[] }).groups.flatMap((g) => g.rules);

function targetsDir(): string {
  const dir = process.env.REKEY_PROMETHEUS_TARGETS_DIR;
  if (!dir) throw new Error('REKEY_PROMETHEUS_TARGETS_DIR is not set: eval "$(bash scripts/stack.sh env)"');
  return dir;
}

/** The rules as the stack's real Prometheus runs them (their unit tests are in test/unit/deploy/alerts.test.ts). */
describe('the alerting rules in a running Prometheus', () => {
  test("are loaded by the local stack's Prometheus (scripts/stack.sh)", async () => {
    const res = await fetch(`${prometheusUrl()}/api/v1/rules?type=alert`);
    const body = (await res.json()) as { data: { groups: { name: string; file: string; rules: { name: string; health: string }[] }[] } };
    const group = body.data.groups.find((g) => g.name === 'rekey');
    assert.ok(group, 'no rekey rule group: run bash scripts/stack.sh up');
    assert.equal(group.file, RULES);
    assert.deepEqual(group.rules.map((r) => r.name).sort(), rules.map((r) => r.alert).sort());
    assert.ok(group.rules.every((r) => r.health !== 'err'), JSON.stringify(group.rules));
  });

  test('RekeyRetiringKeyUsed fires once a worker reports a refusal for a retiring key', async () => {
    const key = `arn:aws:kms:us-east-1:111122223333:key/${uniqueName('k')}`;
    let refusals = 0;
    const metrics = createMetrics();
    metrics.provideRetiringKeys(() => [{ key, state: 'disabled', refusals }]);
    const server = await startMetricsServer({ port: 0, registry: metrics.registry });
    const name = uniqueName('alerts');
    const unregister = await registerScrapeTarget({ dir: targetsDir(), name, address: `127.0.0.1:${server.port}`, labels: { instance: name } });
    const alert = `ALERTS{alertname="RekeyRetiringKeyUsed", key="${key}"}`;
    try {
      await waitForSeries(`rekey_retiring_key_refusals_total{key="${key}"}`);
      // A few scrapes at 0, so the rule's increase() has a baseline (1 s scrape and evaluation interval).
      await sleep(3_000);
      assert.deepEqual(await queryPrometheus(alert), [], 'no refusal, no alert');
      refusals = 1;
      const firing = await waitForSeries(`${alert.slice(0, -1)}, alertstate="firing"}`, (s) => s.length === 1, 30_000);
      assert.equal(firing[0]!.metric.severity, 'critical');
    } finally {
      await unregister();
      await server.close();
    }
  });
});
