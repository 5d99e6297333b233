import type { S3Client } from '@aws-sdk/client-s3';
import { versionBelow } from '../s3/snapshot.js';
import { notRotated, type ObjectOutcome } from './outcome.js';

/**
 * S3 keeps an object's ETag when only its metadata changes, so the ETag condition of a write cannot
 * see another writer's metadata-only update made between rekey's read and its write: rekey's write
 * then carries the metadata it read, and the other writer's update is lost. In a versioned bucket the
 * history tells: the version directly below rekey's must be the one it read. When it is not, the
 * rotation stands (the object is under the target key), but the outcome says which version to restore
 * from, and no replaced version is purged. Undefined when nothing was lost or nothing can tell
 * (an unversioned bucket, a store that rewrote the version in place).
 */
export async function lostUpdate(s3: S3Client, at: { bucket: string; key: string; read: string | undefined; written: string | undefined }, rotatedOutcome: ObjectOutcome): Promise<ObjectOutcome | undefined> {
  const { bucket, key, read, written } = at;
  if (read === undefined || written === undefined || read === 'null' || written === 'null' || read === written) return undefined;
  let below: string | undefined;
  try {
    below = await versionBelow(s3, bucket, key, written);
  } catch {
    // The check could not be made: the rotation stands as written, and its message says so.
    return { ...rotatedOutcome, message: `${rotatedOutcome.message}; the version history could not be listed to check for a concurrent metadata update` };
  }
  if (below === undefined || below === read) return undefined;
  const message =
    `rotated, but another writer's version ${below} of s3://${bucket}/${key} landed between rekey's read (version ${read}) and its write (version ${written}); ` +
    `rekey's write carries the metadata of ${read}: compare with ${below} and restore what it changed. No replaced version was purged`;
  return notRotated(rotatedOutcome.ref, rotatedOutcome.mode, 'lost-update', message, rotatedOutcome);
}
