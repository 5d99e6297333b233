import type { Mode, TargetFormat } from './outcome.js';

/** Where a rotation moves objects to; built once per campaign from its spec. */
export interface RotationTarget {
  readonly mode: Mode;
  /** The target key as the user named it; legacy `kms` envelopes record it as `kms_cmk_id`. */
  readonly targetKey: string;
  /** The ARN KMS resolved it to; KMS responses name keys by ARN. */
  readonly targetKeyArn: string;
  readonly targetFormat: TargetFormat;
  /** Whether an object whose data key is under `keyArn` belongs to the rotation. */
  acceptsSource(keyArn: string): boolean;
}

export function rotationTarget(options: {
  mode: Mode;
  targetKey: string;
  targetKeyArn: string;
  targetFormat: TargetFormat;
  sourceKeyArns: readonly string[];
}): RotationTarget {
  const sources = new Set(options.sourceKeyArns);
  return {
    mode: options.mode,
    targetKey: options.targetKey,
    targetKeyArn: options.targetKeyArn,
    targetFormat: options.targetFormat,
    acceptsSource: (keyArn) => sources.size === 0 || sources.has(keyArn),
  };
}
