import type { S3Client } from '@aws-sdk/client-s3';
import { RetryBudget, withBudget } from '../retry/budget.js';
import type { WriteResult } from '../s3/conditional-writes.js';
import { wrappedKeyDigest, type WriteIntent } from './intent.js';
import { rotated, type ObjectOutcome } from './outcome.js';
import { instructionKey, readEncryptedObject, type EncryptedObject } from './read-envelope.js';
import type { Replacement } from './replaced-versions.js';

/**
 * The object as it is now when it carries the intent's new wrapped key, i.e. the intended write
 * landed; undefined when it does not, or cannot be read (the rotation then simply runs again).
 */
export async function landedWrite(s3: S3Client, intent: WriteIntent): Promise<EncryptedObject | undefined> {
  try {
    // A budget of its own: the write's retries may have spent the object's, and the record needs this answer.
    const object = await withBudget(new RetryBudget(), () => readEncryptedObject(s3, intent.ref));
    return wrappedKeyDigest(object.envelope.encryptedDataKey) === intent.wrappedKeyDigest ? object : undefined;
  } catch {
    return undefined;
  }
}

/** What the landed write wrote: the object's version, or its instruction file's. */
export function writtenBy(intent: WriteIntent, object: EncryptedObject): WriteResult {
  const file = object.instructionFile;
  return intent.location === 'instruction-file' && file ? { etag: file.etag, versionId: file.versionId } : { etag: object.snapshot.etag, versionId: object.snapshot.versionId };
}

/** The outcome of a landed write with every fact the intent kept, as if its writer had recorded it. */
export function recoveredOutcome(intent: WriteIntent, object: EncryptedObject, written: WriteResult, facts: { bytesWritten: number }, note: string): ObjectOutcome {
  // An instruction-file write leaves the object as it was: its columns say so, the file's its own.
  const where =
    intent.location === 'instruction-file'
      ? { newEtag: object.snapshot.etag, newVersionId: object.snapshot.versionId, instructionFileNewEtag: written.etag }
      : { newEtag: written.etag, newVersionId: written.versionId };
  return rotated(
    intent.ref,
    intent.mode,
    { ...intent.facts, ...where, bytesWritten: facts.bytesWritten, durationMs: Date.now() - intent.at },
    `rotated (its writer stopped before recording it; recorded from its write intent)${note ? `; ${note}` : ''}`,
  );
}

/** The key a landed write replaced a version of. */
export function writtenKey(intent: WriteIntent): string {
  return intent.location === 'instruction-file' ? instructionKey(intent.ref.key) : intent.ref.key;
}

export function replacementBase(intent: WriteIntent, object: EncryptedObject, written: WriteResult): Omit<Replacement, 'replaced'> {
  return {
    bucket: intent.ref.bucket,
    written: { location: intent.location, key: writtenKey(intent), versionId: written.versionId, etag: written.etag },
    objectMetadata: object.snapshot.metadata,
  };
}
