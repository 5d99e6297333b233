import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import type { CampaignStatus } from '../campaign/spec.js';
import type { CampaignStore } from '../campaign/store.js';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'unknown';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** Objects per second since the campaign was created, and the time left at that pace. */
export function progressOf(status: CampaignStatus, now = Date.now()) {
  const end = status.finishedAt ?? now;
  const seconds = Math.max(0.001, (end - status.createdAt) / 1000);
  const rate = status.done / seconds;
  const left = Math.max(0, status.planned - status.done);
  return {
    ratio: status.planned > 0 ? status.done / status.planned : status.planComplete ? 1 : 0,
    objectsPerSecond: rate,
    bytesPerSecond: status.bytesRead / seconds,
    etaSeconds: status.finishedAt ? 0 : rate > 0 ? left / rate : Number.POSITIVE_INFINITY,
  };
}

export function describeStatus(status: CampaignStatus): string {
  const p = progressOf(status);
  const reasons = Object.entries(status.byReason)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([reason, n]) => `    ${reason.padEnd(32)} ${n}`);
  return [
    `campaign ${status.id} (${status.spec.name}): ${status.state}${status.planComplete ? '' : status.planning === 'backpressure' ? `, planning paused for backpressure (${status.spec.maxUnsettled} objects unsettled; it resumes as workers drain)` : `, planning: listing (a planner that stopped resumes with: rekey plan ${status.id})`}`,
    ...(status.spec.schedule ? [`  a run of schedule ${status.spec.schedule.id}, fired ${new Date(status.spec.schedule.firedAt).toISOString()}`] : []),
    `  mode ${status.spec.mode} to ${status.spec.targetKeyArn}, priority ${status.spec.priority}`,
    `  objects  ${status.done}/${status.planned} done (${(p.ratio * 100).toFixed(1)}%): ${status.rotated} rotated, ${status.skipped} skipped, ${status.failed} failed`,
    ...(reasons.length ? ['  by reason', ...reasons] : []),
    ...describeVerification(status),
    `  bytes    ${formatBytes(status.bytesRead)} read, ${formatBytes(status.bytesWritten)} written`,
    `  rate     ${p.objectsPerSecond.toFixed(1)} objects/s, ${formatBytes(p.bytesPerSecond)}/s; ${status.finishedAt ? 'finished' : `ETA ${formatDuration(p.etaSeconds)}`}`,
  ].join('\n');
}

/** The closing verification: what remains under the source keys, per key and kind. */
function describeVerification(status: CampaignStatus): string[] {
  const v = status.verification;
  if (status.state === 'verifying') return ['  closing  every object settled; verifying that nothing remains under the source keys'];
  if (!v) return status.spec.skipVerification && status.finishedAt ? ['  closing  not verified (--no-verify): run rekey audit before retiring a key'] : [];
  const keys = v.sourceKeys === 'any-but-target' ? 'any key but the target' : v.sourceKeys.join(', ');
  if (v.remaining === 0 && v.unreadable === 0) return [`  closing  verified ${new Date(v.at).toISOString()}: nothing remains under ${keys} (${v.scanned} entries scanned)`];
  const perKey = Object.entries(v.byKey).flatMap(([key, kinds]) => Object.entries(kinds).map(([kind, n]) => `    ${key} ${kind.padEnd(24)} ${n}`));
  return [
    `  closing  verified ${new Date(v.at).toISOString()}: ${v.remaining} entries remain under ${keys}, ${v.unreadable} unreadable (rekey report ${status.id} --remaining lists them)`,
    ...perKey,
  ];
}

function finished(status: CampaignStatus): boolean {
  return status.finishedAt !== undefined;
}

export interface WatchOptions {
  /** Draw a live progress bar (a terminal); otherwise wait silently. */
  readonly live: boolean;
  readonly intervalMs?: number;
  readonly signal?: AbortSignal;
  /** Resolves when the campaign may have moved (a worker in this process finished a job): look before the next poll. */
  readonly changed?: () => Promise<void>;
}

/** Polls a campaign until every object has its outcome, drawing a progress bar on the way. */
export async function watchCampaign(store: CampaignStore, id: string, options: WatchOptions): Promise<CampaignStatus> {
  const bar = options.live
    ? new cliProgress.SingleBar(
        {
          format: '{bar} {percentage}% | {value}/{total} objects | {rotated} rotated {skipped} skipped {failed} failed | {rate}/s | ETA {eta_text}',
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let status = await store.status(id);
  bar?.start(Math.max(1, status.planned), status.done, barPayload(status));
  while (!finished(status) && !options.signal?.aborted) {
    await nextLook(options);
    status = await store.status(id);
    bar?.setTotal(Math.max(1, status.planned));
    bar?.update(status.done, barPayload(status));
  }
  bar?.stop();
  return status;
}

/** At most this many looks a second however fast jobs finish: a look is a few Redis reads. */
const MIN_LOOK_GAP_MS = 100;

async function nextLook(options: WatchOptions): Promise<void> {
  if (!options.changed) return sleep(options.intervalMs ?? 1000);
  const started = Date.now();
  // The poll's timer is cancelled when a change comes first, so no timer holds the process at its end.
  const timer = new AbortController();
  await Promise.race([sleep(options.intervalMs ?? 1000, undefined, { signal: timer.signal }).catch(() => undefined), options.changed()]);
  timer.abort();
  const gap = MIN_LOOK_GAP_MS - (Date.now() - started);
  if (gap > 0) await sleep(gap);
}

function barPayload(status: CampaignStatus) {
  const p = progressOf(status);
  return {
    rotated: status.rotated,
    skipped: status.skipped,
    failed: status.failed,
    rate: p.objectsPerSecond.toFixed(1),
    eta_text: formatDuration(p.etaSeconds),
  };
}
