import type { S3Client } from '@aws-sdk/client-s3';
import { encodeS3MetadataValue, isS3ecMetadataKey, serialiseEnvelope, type Envelope } from '../formats/index.js';
import { putSmallObject, replaceMetadata, type WriteResult } from '../s3/conditional-writes.js';
import type { ObjectSnapshot } from '../s3/snapshot.js';
import type { UploadJournal } from '../s3/upload-journal.js';
import type { EncryptedObject } from './read-envelope.js';

/**
 * The user metadata of the rewritten object: the user's own keys exactly as S3 returned them, and the
 * new S3EC keys in place of the old ones (docs/design.md §4.5).
 */
export function mergedMetadata(snapshot: ObjectSnapshot, s3ecKeys: Readonly<Record<string, string>>): Record<string, string> {
  const own = Object.entries(snapshot.metadata).filter(([key]) => !isS3ecMetadataKey(key));
  const fresh = Object.entries(s3ecKeys).map(([key, value]) => [key, encodeS3MetadataValue(value)]);
  return Object.fromEntries([...own, ...fresh]);
}

/**
 * Stores a rewrapped envelope where the old one was: a conditional self-copy for object metadata, a
 * conditional put of the instruction file otherwise (the object itself is untouched then).
 */
export async function writeRewrappedEnvelope(
  s3: S3Client,
  object: EncryptedObject,
  envelope: Envelope,
  journal: UploadJournal,
): Promise<WriteResult> {
  const out = serialiseEnvelope(envelope);
  const file = object.instructionFile;
  if (envelope.location === 'object-metadata' || file === undefined || out.instructionFile === undefined) {
    return replaceMetadata(s3, object.snapshot, mergedMetadata(object.snapshot, out.objectMetadata), { journal });
  }
  return putSmallObject(s3, {
    bucket: object.snapshot.bucket,
    key: file.key,
    body: out.instructionFile,
    metadata: { ...file.metadata },
    ifMatch: file.etag,
    contentType: file.headers.ContentType,
  });
}
