import type { S3Client } from '@aws-sdk/client-s3';
import { RekeyError } from '../errors.js';
import { encodeS3MetadataValue, isS3ecMetadataKey, serialiseEnvelope, type Envelope } from '../formats/index.js';
import { putSmallObject, replaceMetadata, type WriteResult } from '../s3/conditional-writes.js';
import { fitsUserMetadata, MAX_USER_METADATA_BYTES } from '../s3/metadata-limit.js';
import type { KeptSettings, ObjectSnapshot, SmallObject } from '../s3/snapshot.js';
import { readTagging } from '../s3/tagging.js';
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

/** An envelope placed where it fits: the object's full user metadata, and the instruction file's body if any. */
export interface PlacedEnvelope {
  readonly envelope: Envelope;
  readonly metadata: Record<string, string>;
  readonly instructionFile: string | undefined;
}

/**
 * Object metadata when the object's metadata then stays within S3's 2 KB (body and key change in one
 * atomic write); an instruction file when it would not, which is how S3EC writers store large
 * envelopes (a large encryption context, or much user metadata). Refused before any write when even
 * the user's own metadata leaves no room.
 */
export function placeEnvelope(snapshot: ObjectSnapshot, envelope: Envelope): PlacedEnvelope {
  for (const location of ['object-metadata', 'instruction-file'] as const) {
    const placed = { ...envelope, location };
    const out = serialiseEnvelope(placed);
    const metadata = mergedMetadata(snapshot, out.objectMetadata);
    if (fitsUserMetadata(metadata)) return { envelope: placed, metadata, instructionFile: out.instructionFile };
  }
  throw new RekeyError('metadata-too-large', `the object's user metadata passes S3's ${MAX_USER_METADATA_BYTES}-byte limit even with the envelope in an instruction file`);
}

/**
 * A conditional put of `<key>.instruction`: If-Match the file read, which keeps its metadata, tags,
 * headers, SSE settings and storage class; If-None-Match for a new file, which takes the object's SSE
 * settings and storage class.
 */
export async function putInstructionFile(
  s3: S3Client,
  target: { readonly bucket: string; readonly key: string; readonly body: string },
  previous: (SmallObject & { readonly key: string }) | undefined,
  object: KeptSettings,
): Promise<WriteResult> {
  const { bucket, key, body } = target;
  if (previous === undefined) {
    return putSmallObject(s3, { bucket, key, body, metadata: {}, ifMatch: undefined, settings: { headers: {}, sse: object.sse, storageClass: object.storageClass } });
  }
  const tagging = await readTagging(s3, { bucket, key, versionId: previous.versionId, tagCount: previous.tagCount });
  return putSmallObject(s3, { bucket, key, body, metadata: { ...previous.metadata }, ifMatch: previous.etag, settings: previous, tagging });
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
    const metadata = mergedMetadata(object.snapshot, out.objectMetadata);
    /* Precondition: S3 would refuse the copy (MetadataTooLarge); no request is spent learning it. */
    if (!fitsUserMetadata(metadata)) {
      throw new RekeyError('metadata-too-large', `the rewrapped envelope would take the object's user metadata past S3's ${MAX_USER_METADATA_BYTES}-byte limit`);
    }
    return replaceMetadata(s3, object.snapshot, metadata, { journal });
  }
  return putInstructionFile(s3, { bucket: object.snapshot.bucket, key: file.key, body: out.instructionFile }, file, object.snapshot);
}
