import type { Mode, TargetFormat } from '../rotate/outcome.js';

export type Priority = 'incident' | 'scheduled';
export const PRIORITIES: readonly Priority[] = ['incident', 'scheduled'];

/** Where the objects of a campaign come from. */
export type CampaignSource =
  | { readonly kind: 'listing'; readonly bucket: string; readonly prefix: string }
  | { readonly kind: 'manifest'; readonly uri: string }
  | { readonly kind: 'inventory'; readonly uri: string };

/** What the user asked for; stored once at `start` and read by every worker. Key ids only, no key material. */
export interface CampaignSpec {
  readonly name: string;
  readonly mode: Mode;
  /** The target key as the user named it (alias, id or ARN) and as KMS resolved it. */
  readonly targetKey: string;
  readonly targetKeyArn: string;
  /** When set, only objects whose data key is under one of these keys move; others are skipped. */
  readonly sourceKeyArns: readonly string[];
  readonly targetFormat: TargetFormat;
  readonly priority: Priority;
  readonly sources: readonly CampaignSource[];
  /** Shared by all workers of the campaign, through Redis. */
  readonly kmsRequestsPerSecond: number;
  readonly batchSize: number;
  /** Noncurrent versions are objects of the plan too (README: versioned buckets). */
  readonly includeVersions?: boolean;
  /** Delete the exact version a rotation replaced, once the new version is verified. */
  readonly purgeReplacedVersions?: boolean;
  /** rekey: re-encrypt legacy AES/CBC content too (`--allow-unauthenticated-source`); skipped otherwise. */
  readonly allowUnauthenticatedSource?: boolean;
  /** Only objects last modified at or before this instant (epoch ms) are planned: a scheduled run's age filter. */
  readonly modifiedBefore?: number;
  /** Where each settled batch's rows go: `s3://bucket/prefix/` or an absolute folder (report-store.ts). */
  readonly reportTo: string;
  /** End without the closing verification (a huge bucket whose re-scan costs too much; README). */
  readonly skipVerification?: boolean;
  /** Delete instruction files no object uses any more, once re-checked, conditionally on their ETag. */
  readonly removeOrphanInstructionFiles?: boolean;
  /** Planning pauses while this many planned objects are not settled yet (backpressure). */
  readonly maxUnsettled?: number;
  /** The schedule that made this campaign, and when it fired. */
  readonly schedule?: { readonly id: string; readonly firedAt: number };
}

/**
 * `verifying`: every object settled and one worker re-scans the scope; `done`: verified, nothing it
 * could have moved remains (or the verification was skipped); `done-with-remainder`: verified, and
 * entries remain under the source keys or could not be read.
 */
export type CampaignState = 'planning' | 'running' | 'paused' | 'cancelled' | 'verifying' | 'done' | 'done-with-remainder';

/** States of a campaign that sends KMS no more requests (`done-with-remainder`: its closing verification found entries left). */
const FINISHED_STATES: ReadonlySet<CampaignState> = new Set(['done', 'done-with-remainder', 'cancelled']);

export function isFinished(state: CampaignState): boolean {
  return FINISHED_STATES.has(state);
}

/** Planning lists its sources, or waits while too many planned objects are unsettled. */
export type PlanActivity = 'listing' | 'backpressure';

/** Why an entry of a campaign's scope still depends on a source key after the campaign. */
export type RemainderKind = 'object' | 'noncurrent-version' | 'instruction-file' | 'orphan-instruction-file' | 'unreadable';
export const REMAINDER_KINDS: readonly RemainderKind[] = ['object', 'noncurrent-version', 'instruction-file', 'orphan-instruction-file', 'unreadable'];

/** The closing verification: what remains, per source key, after the last object settled. */
export interface Verification {
  readonly at: number;
  /** The keys whose remainders count: the campaign's --source-key, else every key but the target. */
  readonly sourceKeys: readonly string[] | 'any-but-target';
  readonly scanned: number;
  /** Entries under a source key (every kind but `unreadable`). */
  readonly remaining: number;
  /** Encrypted entries whose key could not be told: the key's absence is not proven. */
  readonly unreadable: number;
  readonly byKind: Readonly<Record<RemainderKind, number>>;
  /** Per KMS key: remainders by kind (unreadable ones under `unknown`). */
  readonly byKey: Readonly<Record<string, Partial<Record<RemainderKind, number>>>>;
  readonly kmsProbes: number;
}

export interface CampaignCounters {
  readonly planned: number;
  readonly done: number;
  readonly rotated: number;
  readonly skipped: number;
  readonly failed: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

export interface CampaignStatus extends CampaignCounters {
  readonly id: string;
  readonly spec: CampaignSpec;
  readonly state: CampaignState;
  readonly planComplete: boolean;
  readonly createdAt: number;
  readonly finishedAt: number | undefined;
  /** `skipped:changed` → 3, `failed:tag-mismatch` → 1, … */
  readonly byReason: Readonly<Record<string, number>>;
  readonly planning: PlanActivity;
  readonly verification: Verification | undefined;
}

/** BullMQ runs lower numbers first: incident campaigns overtake scheduled ones. */
export function jobPriority(priority: Priority): number {
  return priority === 'incident' ? 1 : 100;
}

/**
 * The cut-off of an age filter: objects last modified at or before it are old enough. LastModified
 * has whole-second resolution, so the cut-off is rounded down to a second and one more second is
 * taken off: nothing written at or after `now` can look old enough, so a re-delivered job never
 * rotates again what its run has just rotated.
 */
export function ageCutoff(now: number, minAgeMs: number): number {
  return Math.floor((now - minAgeMs) / 1000) * 1000 - 1000;
}
