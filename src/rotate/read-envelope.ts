import type { S3Client } from '@aws-sdk/client-s3';
import { RekeyError } from '../errors.js';
import {
  DEFAULT_INSTRUCTION_FILE_SUFFIX,
  inspectMetadata,
  parseEnvelope,
  requireKmsWrap,
  type KmsEnvelope,
} from '../formats/index.js';
import { headObject, isLocked, readSmallObject, type ObjectSnapshot, type SmallObject } from '../s3/snapshot.js';
import type { ObjectRef } from './outcome.js';

/** An object as rotation starts from it: what HEAD saw, its envelope, and its instruction file if any. */
export interface EncryptedObject {
  readonly snapshot: ObjectSnapshot;
  readonly envelope: KmsEnvelope;
  readonly instructionFile: (SmallObject & { readonly key: string }) | undefined;
}

export function instructionKey(key: string): string {
  return `${key}${DEFAULT_INSTRUCTION_FILE_SUFFIX}`;
}

/**
 * Reads an object's envelope the way S3EC readers do (formats.md §1.2): object metadata first, then
 * `<key>.instruction`. Throws a RekeyError whose reason says why the object cannot be rotated.
 */
export async function readEncryptedObject(s3: S3Client, ref: ObjectRef): Promise<EncryptedObject> {
  const snapshot = await headObject(s3, ref.bucket, ref.key, ref.versionId);
  /* Precondition: object lock and legal holds are respected, never bypassed (design.md invariant 5). */
  if (isLocked(snapshot.lock)) {
    throw new RekeyError('object-locked', `object is under ${snapshot.lock.legalHold ? 'a legal hold' : `${snapshot.lock.mode} retention`}`);
  }
  const inspection = inspectMetadata(snapshot.metadata);
  if (inspection.kind === 'envelope') {
    requireKmsWrap(inspection.envelope);
    return { snapshot, envelope: inspection.envelope, instructionFile: undefined };
  }
  const key = instructionKey(ref.key);
  const file = await readSmallObject(s3, ref.bucket, key);
  if (file === undefined && inspection.kind === 'not-encrypted') {
    throw new RekeyError('not-encrypted', 'no S3 Encryption Client metadata and no instruction file');
  }
  const envelope = parseEnvelope(snapshot.metadata, file?.body);
  requireKmsWrap(envelope);
  return { snapshot, envelope, instructionFile: file && { ...file, key } };
}
