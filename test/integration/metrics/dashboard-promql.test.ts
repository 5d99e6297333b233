import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dashboardQueries, queryPrometheus } from '../../helpers/prometheus.js';

/** The dashboard's queries against the stack's Prometheus; the file-only checks are in test/unit/deploy/grafana.test.ts. */
describe('the Grafana dashboard on Prometheus', () => {
  test("every panel query parses with Prometheus's own PromQL parser", async () => {
    const queries = [...dashboardQueries(), ...dashboardQueries({ campaign: ['a.b', 'c'] })];
    for (const query of queries) {
      await assert.doesNotReject(queryPrometheus(query.expr), `${query.panel} ${query.refId}: ${query.expr}`);
    }
  });

  test('a broken expression is refused by the same check', async () => {
    await assert.rejects(queryPrometheus('sum by (le (rate(x[1m]))'), {
      name: 'PrometheusQueryError',
      errorType: 'bad_data',
    });
  });
});
