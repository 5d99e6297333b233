import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { createMetrics } from '../../../src/metrics/index.js';
import { dashboardPanels, readDashboard } from '../../helpers/prometheus.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const GRID_COLUMNS = 24;

interface Datasource {
  readonly type: string;
  readonly uid: string;
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource?: Datasource;
  readonly targets?: readonly { readonly refId: string; readonly expr: string; readonly datasource?: Datasource }[];
  readonly panels?: readonly Panel[];
}

interface Variable {
  readonly name: string;
  readonly type: string;
  readonly datasource?: Datasource;
  readonly definition?: string;
  readonly query?: string | { readonly query: string };
  readonly multi?: boolean;
  readonly includeAll?: boolean;
  readonly allValue?: string;
}

interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly Variable[] };
}

const dashboard = readDashboard() as unknown as Dashboard;
const panels = dashboardPanels(readDashboard()) as unknown as readonly Panel[];
const queryPanels = panels.filter((panel) => panel.type !== 'row');

function yamlFile<T>(path: string): T {
  return parse(readFileSync(resolve(ROOT, path), 'utf8')) as T;
}

const datasources = yamlFile<{
  apiVersion: number;
  datasources: { name: string; uid: string; type: string; access: string; url: string }[];
}>('grafana/provisioning/datasources/prometheus.yml');

const providers = yamlFile<{
  apiVersion: number;
  providers: { name: string; type: string; orgId?: number; options: { path: string } }[];
}>('grafana/provisioning/dashboards/rekey.yml');

/** Metric names an expression refers to, histogram series folded into their histogram. */
function metricNames(expr: string): string[] {
  const names = expr.match(/\b(rekey|process|nodejs)_[a-z0-9_]+/g) ?? [];
  return names.map((name) => name.replace(/_(bucket|sum|count)$/, ''));
}

/** Name → label names of every metric a worker exports, Node's default metrics included. */
function exportedMetrics(): Map<string, readonly string[]> {
  const metrics = createMetrics().registry.getMetricsAsArray() as unknown as { name: string; labelNames: string[] }[];
  return new Map(metrics.map((metric) => [metric.name, metric.labelNames]));
}

describe('the Grafana dashboard', () => {
  test('has the dashboard fields Grafana needs', () => {
    assert.equal(dashboard.uid, 'rekey');
    assert.equal(typeof dashboard.title, 'string');
    assert.ok(dashboard.schemaVersion >= 39, `schemaVersion ${dashboard.schemaVersion}`);
    assert.ok(Array.isArray(dashboard.panels) && dashboard.panels.length > 0);
  });

  test('has a campaign variable over label_values(rekey_objects_total, campaign), multi with All', () => {
    const campaign = dashboard.templating.list.find((v) => v.name === 'campaign');
    assert.ok(campaign, 'no campaign variable');
    assert.equal(campaign.type, 'query');
    assert.equal(campaign.datasource?.uid, 'prometheus');
    const query = typeof campaign.query === 'string' ? campaign.query : campaign.query?.query;
    assert.equal(query, 'label_values(rekey_objects_total, campaign)');
    assert.equal(campaign.definition, query);
    assert.equal(campaign.multi, true);
    assert.equal(campaign.includeAll, true);
    // A regex All value also matches campaigns that another metric knows and rekey_objects_total does not yet.
    assert.equal(campaign.allValue, '.*');
  });

  test('every panel has an id, a type and a place on the grid, and no two overlap', () => {
    const ids = new Set<number>();
    for (const panel of panels) {
      assert.equal(typeof panel.id, 'number', panel.title);
      assert.ok(!ids.has(panel.id), `duplicate panel id ${panel.id}`);
      ids.add(panel.id);
      assert.equal(typeof panel.type, 'string', panel.title);
      const { x, y, w, h } = panel.gridPos;
      assert.ok([x, y, w, h].every(Number.isInteger) && w > 0 && h > 0, `${panel.title}: bad gridPos`);
      assert.ok(x >= 0 && x + w <= GRID_COLUMNS, `${panel.title} is wider than the grid`);
    }
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const apart =
          a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
          b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
          a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
          b.gridPos.y + b.gridPos.h <= a.gridPos.y;
        assert.ok(apart, `"${a.title}" overlaps "${b.title}"`);
      }
    }
  });

  test('every panel queries the provisioned Prometheus with refIds and exprs', () => {
    for (const panel of queryPanels) {
      assert.equal(panel.datasource?.uid, datasources.datasources[0]?.uid, panel.title);
      assert.ok(panel.targets && panel.targets.length > 0, `${panel.title} has no targets`);
      const refIds = new Set(panel.targets.map((t) => t.refId));
      assert.equal(refIds.size, panel.targets.length, `${panel.title}: duplicate refId`);
      for (const target of panel.targets) {
        assert.equal(target.datasource?.uid, 'prometheus', `${panel.title} ${target.refId}`);
        assert.ok(typeof target.expr === 'string' && target.expr.trim() !== '', `${panel.title} ${target.refId}`);
      }
    }
  });

  test('has the panels a campaign is watched with', () => {
    const exprs = queryPanels.flatMap((panel) => (panel.targets ?? []).map((t) => ({ panel, expr: t.expr })));
    const shows = (pattern: RegExp, type?: string) =>
      exprs.some(({ panel, expr }) => pattern.test(expr) && (type === undefined || panel.type === type));
    assert.ok(shows(/rekey_campaign_progress_ratio/));
    assert.ok(shows(/rekey_campaign_eta_seconds/));
    assert.ok(shows(/rekey_campaign_objects_planned/) && shows(/rekey_campaign_objects_done/));
    assert.ok(shows(/rate\(rekey_read_bytes_total/) && shows(/rate\(rekey_written_bytes_total/));
    assert.ok(shows(/rate\(rekey_objects_total/));
    assert.ok(shows(/by \(outcome, reason\) \(rekey_objects_total\{[^}]*outcome!="rotated"/));
    assert.ok(shows(/by \(operation, result\) \(rate\(rekey_kms_requests_total/));
    assert.ok(shows(/rekey_kms_throttles_total/));
    assert.ok(shows(/by \(le\) \(rate\(rekey_kms_request_duration_seconds_bucket/, 'heatmap'));
    assert.ok(shows(/by \(le\) \(rate\(rekey_object_duration_seconds_bucket/, 'heatmap'));
    assert.ok(shows(/by \(state\) \(rekey_queue_jobs/));
    assert.ok(shows(/rekey_thread_pool_utilization_ratio/));
    assert.ok(shows(/rate\(process_cpu_seconds_total/));
    assert.ok(shows(/process_resident_memory_bytes/));
    assert.ok(shows(/rekey_objects_in_flight/));
    assert.ok(shows(/by \(key, state\) \(rekey_retiring_key_state/, 'table'));
    assert.ok(shows(/rekey_retiring_key_deletion_timestamp_seconds/, 'table'));
    assert.ok(shows(/by \(key\) \(rekey_retiring_key_refusals_total/));
    assert.ok(shows(/ALERTS\{alertstate="firing", alertname=~"Rekey\.\+"\}/));
  });

  test('uses only metrics the metrics module exports, and shows every rekey metric', () => {
    const exported = exportedMetrics();
    const used = new Set(queryPanels.flatMap((panel) => (panel.targets ?? []).flatMap((t) => metricNames(t.expr))));
    for (const name of used) assert.ok(exported.has(name), `the dashboard uses ${name}, which rekey does not export`);
    // Provider errors are for debugging a worker, not for watching a campaign.
    const unshown = [...exported.keys()].filter(
      (name) => name.startsWith('rekey_') && name !== 'rekey_metrics_provider_errors_total' && !used.has(name),
    );
    assert.deepEqual(unshown, []);
  });

  test('every query on a campaign-labelled metric follows the campaign variable', () => {
    const exported = exportedMetrics();
    for (const panel of queryPanels) {
      for (const target of panel.targets ?? []) {
        for (const name of metricNames(target.expr)) {
          if (!exported.get(name)?.includes('campaign')) continue;
          const filtered = new RegExp(`${name}(_bucket)?\\{[^}]*campaign=~"\\$campaign"`);
          assert.match(target.expr, filtered, `${panel.title}: ${name} ignores $campaign`);
        }
      }
    }
  });
});

describe('the Grafana provisioning files', () => {
  test('the datasource: apiVersion 1, uid prometheus, URL from PROMETHEUS_URL', () => {
    assert.equal(datasources.apiVersion, 1);
    assert.equal(datasources.datasources.length, 1);
    const [prometheus] = datasources.datasources;
    assert.equal(prometheus?.uid, 'prometheus');
    assert.equal(prometheus?.type, 'prometheus');
    assert.equal(prometheus?.access, 'proxy');
    assert.ok(prometheus?.name);
    assert.match(prometheus?.url ?? '', /^\$\{?PROMETHEUS_URL\}?$/);
  });

  test('the dashboard provider: apiVersion 1, a file provider with a path', () => {
    assert.equal(providers.apiVersion, 1);
    assert.ok(providers.providers.length > 0);
    for (const provider of providers.providers) {
      assert.ok(provider.name);
      assert.equal(provider.type, 'file');
      assert.match(provider.options.path, /^\//);
    }
  });
});

describe('grafana/prometheus.yml', () => {
  test('passes promtool check config', () => {
    const config = resolve(ROOT, 'grafana/prometheus.yml');
    const run = spawnSync('promtool', ['check', 'config', config], { encoding: 'utf8' });
    assert.equal(run.error, undefined, 'promtool is not installed: bash scripts/stack.sh install');
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  });
});
