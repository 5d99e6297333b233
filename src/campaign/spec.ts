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
  /** The schedule that made this campaign, and when it fired. */
  readonly schedule?: { readonly id: string; readonly firedAt: number };
}

export type CampaignState = 'planning' | 'running' | 'paused' | 'cancelled' | 'done';

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
