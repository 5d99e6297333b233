import { createHash } from 'node:crypto';
import type { Mode, ObjectRef, OutcomeFacts } from './outcome.js';

/**
 * What a rotation is about to write, stored before the write can land. A worker killed between the
 * write and its outcome leaves this behind; the worker that takes the batch over reads the object,
 * and if it carries the intent's new wrapped key the write was this campaign's: the object is
 * recorded `rotated` with the facts below, never `already-rotated` without its old key.
 */
export interface WriteIntent {
  readonly ref: ObjectRef;
  readonly mode: Mode;
  /** The outcome's facts as they are once the write lands, but the new ETag and version. */
  readonly facts: OutcomeFacts;
  /** Where the new envelope goes, and the version of that key the write replaces (versioned buckets). */
  readonly location: 'object' | 'instruction-file';
  readonly replacedVersionId: string | undefined;
  /** SHA-256 of the new wrapped data key: proof of the write without keeping the ciphertext. */
  readonly wrappedKeyDigest: string;
  /** The instruction file a rekey drops once the object carries the envelope. */
  readonly instructionFile?: { readonly key: string; readonly etag: string; readonly versionId: string | undefined } | undefined;
  /**
   * The instruction file a rekey puts after the body when metadata has no room for the envelope: the
   * only copy of the new wrapped key until it lands (ciphertext and public parameters, no secret).
   */
  readonly pendingInstructionFile?: string | undefined;
  readonly at: number;
}

/** Where a campaign keeps the write intents of the objects it is moving. */
export interface IntentLog {
  /** Told each write intent; it must be durable when the returned promise resolves. */
  intend(intent: WriteIntent): Promise<void>;
  /**
   * Whether a rotation of this campaign is moving the object's envelope out of its instruction file:
   * told from its intent until its outcome settles, by when the file is dropped.
   */
  movingFromInstructionFile(bucket: string, key: string): Promise<boolean>;
}

export function wrappedKeyDigest(encryptedDataKey: Uint8Array): string {
  return createHash('sha256').update(encryptedDataKey).digest('base64');
}
