import type { S3Client } from '@aws-sdk/client-s3';
import { RekeyError } from '../errors.js';
import {
  CBC,
  DEFAULT_INSTRUCTION_FILE_SUFFIX,
  inspectMetadata,
  parseEnvelope,
  requireKmsWrap,
  type KmsEnvelope,
} from '../formats/index.js';
import { headIfExists, headObject, isLocked, openObject, readSmallObject, type ObjectSnapshot, type OpenedBody, type SmallObject } from '../s3/snapshot.js';
import { checkBodyLength } from './body-length.js';
import type { ObjectRef } from './outcome.js';

/** An object as rotation starts from it: what HEAD saw, its envelope, and its instruction file if any. */
export interface EncryptedObject {
  readonly snapshot: ObjectSnapshot;
  readonly envelope: KmsEnvelope;
  readonly instructionFile: (SmallObject & { readonly key: string }) | undefined;
  /**
   * Whether the version read is the key's current version. A ref without a version id always is; one
   * with an id may name an older version, which S3 cannot rewrite in place: a rotation written on
   * top of the key would bring that old content back as current.
   */
  readonly current: boolean;
}

export function instructionKey(key: string): string {
  return `${key}${DEFAULT_INSTRUCTION_FILE_SUFFIX}`;
}

/**
 * Reads an object's envelope the way S3EC readers do (docs/formats.md §1.2): object metadata first, then
 * `<key>.instruction`. Throws a RekeyError whose reason says why the object cannot be rotated.
 */
export async function readEncryptedObject(s3: S3Client, ref: ObjectRef): Promise<EncryptedObject> {
  return encryptedObjectOf(s3, ref, await headObject(s3, ref.bucket, ref.key, ref.versionId));
}

/**
 * As `readEncryptedObject`, from a GET instead of HEAD, for a rekey that reads the body anyway: one
 * request less per object. An archived object, whose GET S3 refuses, is read by HEAD as before.
 */
export async function openEncryptedObject(s3: S3Client, ref: ObjectRef): Promise<{ object: EncryptedObject; body: OpenedBody | undefined }> {
  let opened: Awaited<ReturnType<typeof openObject>>;
  try {
    opened = await openObject(s3, ref.bucket, ref.key, ref.versionId);
  } catch (err) {
    // Its envelope is still read, so the report tells which key the archived object is under.
    if (err instanceof RekeyError && err.reason === 'archived') return { object: await readEncryptedObject(s3, ref), body: undefined };
    throw err;
  }
  let object: EncryptedObject;
  try {
    object = await encryptedObjectOf(s3, ref, opened.snapshot);
  } catch (err) {
    opened.body.release(opened.snapshot.size);
    throw err;
  }
  /* Precondition: a body without a tag is held to a length told by another answer than its own. */
  if (object.envelope.contentCipher === CBC) {
    // A GET's Content-Length describes the body it sends: one cut short on a block boundary, length
    // to match, passes CBC's padding. HEAD's length, as before, is what the streamed body must reach.
    opened.body.release(opened.snapshot.size);
    return { object: await readEncryptedObject(s3, ref), body: undefined };
  }
  return { object, body: opened.body };
}

async function encryptedObjectOf(s3: S3Client, ref: ObjectRef, snapshot: ObjectSnapshot): Promise<EncryptedObject> {
  const current = await isCurrentVersion(s3, ref, snapshot);
  /* Precondition: object lock and legal holds are respected, never bypassed (docs/design.md §4.5). */
  if (current && isLocked(snapshot.lock)) {
    throw new RekeyError('object-locked', `object is under ${snapshot.lock.legalHold ? 'a legal hold' : `${snapshot.lock.mode} retention`}`);
  }
  const inspection = inspectMetadata(snapshot.metadata);
  if (inspection.kind === 'envelope') {
    requireKmsWrap(inspection.envelope);
    checkBodyLength(snapshot.size, inspection.envelope);
    return { snapshot, envelope: inspection.envelope, instructionFile: undefined, current };
  }
  const key = instructionKey(ref.key);
  const file = await readSmallObject(s3, ref.bucket, key);
  if (file === undefined && inspection.kind === 'not-encrypted') {
    throw new RekeyError('not-encrypted', 'no S3 Encryption Client metadata and no instruction file');
  }
  /* Precondition: an old version's key is told by its own metadata; S3 links no version of the instruction file to it. */
  if (!current) {
    throw new RekeyError('noncurrent-version', 'a noncurrent version whose envelope lives in an instruction file; the old versions of the file hold its key (rekey audit --include-versions lists them)');
  }
  const envelope = parseEnvelope(snapshot.metadata, file?.body);
  requireKmsWrap(envelope);
  checkBodyLength(snapshot.size, envelope);
  return { snapshot, envelope, instructionFile: file && { ...file, key }, current };
}

/** A key whose newest entry is a delete marker has no current version: every version is old. */
async function isCurrentVersion(s3: S3Client, ref: ObjectRef, snapshot: ObjectSnapshot): Promise<boolean> {
  if (ref.versionId === undefined) return true;
  return (await headIfExists(s3, ref.bucket, ref.key))?.versionId === snapshot.versionId;
}
