import type { Mode, TargetFormat } from './outcome.js';

/** Where a rotation moves objects to; built once per campaign from its spec. */
export interface RotationTarget {
  readonly mode: Mode;
  /** The target key as the user named it; legacy `kms` envelopes record it as `kms_cmk_id`. */
  readonly targetKey: string;
  /** The ARN KMS resolved it to; KMS responses name keys by ARN. */
  readonly targetKeyArn: string;
  readonly targetFormat: TargetFormat;
  /** Delete the exact version a rotation replaced in a versioned bucket, once the new one is verified. */
  readonly purgeReplacedVersions: boolean;
  /** Delete instruction files no object reads any more (re-checked, conditional on their ETag). */
  readonly removeOrphanInstructionFiles: boolean;
  /**
   * An age cut-off (epoch ms; a scheduled run or --min-age). An object last modified at or before it
   * is due even when already under the target key: its data key (rekey) or its wrapping (rewrap) is
   * older than the minimum age. One modified after it was rotated since, or written fresh: done.
   */
  readonly modifiedBefore: number | undefined;
  /**
   * rekey: re-encrypt legacy AES/CBC content, which has no authentication (a wrong key or damage can
   * pass its padding check), under an authenticated cipher. Off: such objects are skipped.
   */
  readonly allowUnauthenticatedSource: boolean;
  /** Whether an object whose data key is under `keyArn` belongs to the rotation. */
  acceptsSource(keyArn: string): boolean;
}

export function rotationTarget(options: {
  mode: Mode;
  targetKey: string;
  targetKeyArn: string;
  targetFormat: TargetFormat;
  sourceKeyArns: readonly string[];
  purgeReplacedVersions?: boolean | undefined;
  removeOrphanInstructionFiles?: boolean | undefined;
  modifiedBefore?: number | undefined;
  allowUnauthenticatedSource?: boolean | undefined;
}): RotationTarget {
  const sources = new Set(options.sourceKeyArns);
  return {
    mode: options.mode,
    targetKey: options.targetKey,
    targetKeyArn: options.targetKeyArn,
    targetFormat: options.targetFormat,
    purgeReplacedVersions: options.purgeReplacedVersions === true,
    removeOrphanInstructionFiles: options.removeOrphanInstructionFiles === true,
    modifiedBefore: options.modifiedBefore,
    allowUnauthenticatedSource: options.allowUnauthenticatedSource === true,
    acceptsSource: (keyArn) => sources.size === 0 || sources.has(keyArn),
  };
}

/** Why an object needs no rotation, or undefined when it is due (docs/design.md §4.4). */
export function notDue(target: RotationTarget, keyArn: string | undefined, lastModified: Date | undefined): string | undefined {
  if (target.modifiedBefore === undefined) {
    return keyArn === target.targetKeyArn ? 'the data key is already under the target key' : undefined;
  }
  return modifiedSinceCutoff(target, lastModified);
}

/**
 * Under an age cut-off, why the object's date alone shows it needs no rotation, before any KMS call;
 * undefined without a cut-off or for an object old enough.
 */
export function modifiedSinceCutoff(target: RotationTarget, lastModified: Date | undefined): string | undefined {
  if (oldEnough(lastModified, target.modifiedBefore)) return undefined;
  return 'modified after the age cut-off: rotated since, or written with a fresh data key';
}

/**
 * Whether an object last modified at `lastModified` is at or before the cut-off (always, without one).
 * Without a date it cannot be shown old enough; leaving it is the side that never rotates twice.
 * The planner and the rotation both decide by this, so they never disagree.
 */
export function oldEnough(lastModified: Date | undefined, modifiedBefore: number | undefined): boolean {
  return modifiedBefore === undefined || (lastModified !== undefined && lastModified.getTime() <= modifiedBefore);
}
