import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Talks to the local stack's real Prometheus (REKEY_PROMETHEUS_URL from `scripts/stack.sh env`), and reads
 * the Grafana dashboard's queries as Grafana would send them, so tests check panels against real data.
 */

const ROOT = resolve(import.meta.dirname, '../..');
export const DASHBOARD_PATH = resolve(ROOT, 'grafana/dashboards/rekey.json');

export interface PromSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Prometheus refused the query; a PromQL syntax error is status 400 with errorType `bad_data`. */
export class PrometheusQueryError extends Error {
  constructor(
    readonly expr: string,
    readonly status: number,
    readonly errorType: string,
    message: string,
  ) {
    super(`${errorType} (${status}) for ${expr}: ${message}`);
    this.name = 'PrometheusQueryError';
  }
}

export function prometheusUrl(): string {
  const url = process.env.REKEY_PROMETHEUS_URL;
  if (!url) throw new Error('REKEY_PROMETHEUS_URL is not set: eval "$(bash scripts/stack.sh env)"');
  return url;
}

interface QueryResponse {
  readonly status: 'success' | 'error';
  readonly errorType?: string;
  readonly error?: string;
  readonly data?:
    | { readonly resultType: 'vector'; readonly result: { metric: Record<string, string>; value: [number, string] }[] }
    | { readonly resultType: 'scalar' | 'string'; readonly result: [number, string] }
    | { readonly resultType: 'matrix'; readonly result: unknown[] };
}

/** An instant query at the current time; every result as one sample (a scalar has no labels). */
export async function queryPrometheus(expr: string): Promise<PromSample[]> {
  const res = await fetch(`${prometheusUrl()}/api/v1/query`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ query: expr }),
  });
  const body = (await res.json()) as QueryResponse;
  if (body.status !== 'success' || !body.data) {
    throw new PrometheusQueryError(expr, res.status, body.errorType ?? 'unknown', body.error ?? res.statusText);
  }
  const data = body.data;
  switch (data.resultType) {
    case 'vector':
      return data.result.map(({ metric, value }) => ({ metric, value: Number(value[1]) }));
    case 'scalar':
      return [{ metric: {}, value: Number(data.result[1]) }];
    default:
      throw new PrometheusQueryError(expr, res.status, 'unexpected', `an instant query gave a ${data.resultType}`);
  }
}

/**
 * Polls until `predicate` accepts the query's result. Scrapes and file_sd refreshes take a second or two
 * on the local stack; the timeout message shows the last result, which is what a failing test needs.
 */
export async function waitForSeries(
  expr: string,
  predicate: (samples: readonly PromSample[]) => boolean = (samples) => samples.length > 0,
  timeoutMs = 20_000,
): Promise<PromSample[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const samples = await queryPrometheus(expr);
    if (predicate(samples)) return samples;
    if (Date.now() > deadline) {
      throw new Error(`no accepted result for ${expr} within ${timeoutMs} ms; last: ${JSON.stringify(samples)}`);
    }
    await sleep(250);
  }
}

export interface PanelQuery {
  readonly panelId: number;
  readonly panel: string;
  readonly refId: string;
  /** The query with every variable replaced, ready for Prometheus. */
  readonly expr: string;
}

export interface DashboardQueryOptions {
  /** One campaign, several (Grafana's multi-value regex), or left out for the variable's "All". */
  readonly campaign?: string | readonly string[];
  readonly dashboardPath?: string;
  /** Grafana's `$__rate_interval`: at least four scrape intervals. */
  readonly rateInterval?: string;
  readonly interval?: string;
  readonly range?: string;
}

interface Panel {
  readonly id: number;
  readonly title: string;
  readonly type: string;
  readonly panels?: readonly Panel[];
  readonly targets?: readonly { readonly refId: string; readonly expr: string }[];
}

interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string; readonly allValue?: string }[] };
}

export function readDashboard(path = DASHBOARD_PATH): Dashboard {
  return JSON.parse(readFileSync(path, 'utf8')) as Dashboard;
}

/** Panels in order, including those inside collapsed rows. */
export function dashboardPanels(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** Every panel query of the dashboard, with `$campaign` and Grafana's built-in variables substituted. */
export function dashboardQueries(options: DashboardQueryOptions = {}): PanelQuery[] {
  const { dashboardPath, rateInterval = '1m', interval = '15s', range = '1h' } = options;
  const dashboard = readDashboard(dashboardPath);
  const campaign = campaignValue(dashboard, options.campaign);
  const variables: [RegExp, string][] = [
    [/\$(campaign\b|\{campaign\})/g, campaign],
    [/\$__rate_interval\b/g, rateInterval],
    [/\$__interval\b/g, interval],
    [/\$__range\b/g, range],
  ];
  return dashboardPanels(dashboard).flatMap((panel) =>
    (panel.targets ?? []).map((target) => {
      const expr = variables.reduce((text, [pattern, value]) => text.replace(pattern, () => value), target.expr);
      if (expr.includes('$')) {
        throw new Error(`panel "${panel.title}" uses a variable this helper does not know: ${expr}`);
      }
      return { panelId: panel.id, panel: panel.title, refId: target.refId, expr };
    }),
  );
}

/** As Grafana formats a variable inside `=~"…"`: regex-escaped, several as an alternation, or the All value. */
function campaignValue(dashboard: Dashboard, campaign: DashboardQueryOptions['campaign']): string {
  if (campaign === undefined) {
    const variable = dashboard.templating.list.find((v) => v.name === 'campaign');
    if (variable?.allValue === undefined) throw new Error('the dashboard has no campaign variable with an allValue');
    return variable.allValue;
  }
  const values = typeof campaign === 'string' ? [campaign] : campaign;
  const escaped = values.map((value) => value.replace(/[\\^$*+?.()|{}[\]]/g, (c) => `\\\\${c}`));
  return escaped.length === 1 ? escaped[0]! : `(${escaped.join('|')})`;
}
