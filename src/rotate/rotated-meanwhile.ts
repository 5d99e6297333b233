import type { S3Client } from '@aws-sdk/client-s3';
import { kmsEncryptionContext, rewrapEncryptionContexts } from '../formats/index.js';
import type { KmsBatcher } from '../kms/batcher.js';
import type { ReasonCode } from '../errors.js';
import { headIfExists } from '../s3/snapshot.js';
import { notRotated, type ObjectOutcome } from './outcome.js';
import { readEncryptedObject, type EncryptedObject } from './read-envelope.js';
import type { RotationTarget } from './target.js';

export interface RecheckDeps {
  readonly s3: S3Client;
  readonly kms: KmsBatcher;
}

/**
 * A conditional write that lost may have lost to rekey itself: BullMQ delivers a job at least once,
 * so after a lapsed lock (a Redis outage longer than the job lock) two workers can rotate the same
 * object and only one write wins; and a write whose answer was lost is retried by the SDK against its
 * own result. Reading the object once more tells: if its data key is under the target key now, the
 * object is already rotated, and `changed` would send an auditor looking for a writer that does not
 * exist. Anything else, or any error while looking, keeps `changed`.
 */
export async function settleLostWrite(deps: RecheckDeps, target: RotationTarget, outcome: ObjectOutcome): Promise<ObjectOutcome> {
  if (outcome.reason !== 'changed') return outcome;
  try {
    const keyArn = await currentKeyArn(deps, target, outcome);
    if (keyArn !== target.targetKeyArn) return outcome;
    return notRotated(outcome.ref, outcome.mode, 'already-rotated', 'under the target key since: rotated meanwhile by another worker, or by this write, whose answer was lost', {
      ...outcome,
      newKeyId: keyArn,
    });
  } catch {
    return outcome;
  }
}

/** The KMS key of the object's data key as it is now; rewrap learns it from ReEncrypt, never from Decrypt. */
async function currentKeyArn(deps: RecheckDeps, target: RotationTarget, outcome: ObjectOutcome): Promise<string | undefined> {
  const { envelope } = await readEncryptedObject(deps.s3, outcome.ref);
  if (outcome.mode === 'rewrap') {
    const contexts = rewrapEncryptionContexts(envelope, target.targetKey);
    const [result] = await deps.kms.rewrapMany(
      [{ wrappedKey: envelope.encryptedDataKey, sourceContext: contexts.source, destinationContext: contexts.destination }],
      target.targetKeyArn,
    );
    return result?.ok ? result.sourceKeyId : undefined;
  }
  const key = await deps.kms.decryptDataKey(envelope.encryptedDataKey, kmsEncryptionContext(envelope));
  key.plaintext.fill(0);
  return key.keyId;
}

/** Failures that say the content does not open under the envelope read with it. */
const CONTENT_FAILURES: ReadonlySet<ReasonCode> = new Set<ReasonCode>(['tag-mismatch', 'commitment-mismatch', 'bad-padding', 'truncated']);

/**
 * An S3EC writer that keeps its envelope in an instruction file puts the object, then the file: a
 * rotation that read between the two pairs the writer's new body with the old file, and the content
 * does not open. When the object or its file is no longer what was read, that failure is another
 * writer's write in progress, which wins (`changed`), not damage. Any error while looking keeps the
 * failure as it was.
 */
export async function changedWhileRead(s3: S3Client, read: EncryptedObject | undefined, outcome: ObjectOutcome): Promise<ObjectOutcome> {
  const file = read?.instructionFile;
  if (read === undefined || file === undefined || outcome.reason === undefined || !CONTENT_FAILURES.has(outcome.reason)) return outcome;
  const { bucket, key } = read.snapshot;
  try {
    const [object, fileNow] = await Promise.all([headIfExists(s3, bucket, key), headIfExists(s3, bucket, file.key)]);
    if (object?.etag === read.snapshot.etag && fileNow?.etag === file.etag) return outcome;
  } catch {
    return outcome;
  }
  return notRotated(outcome.ref, outcome.mode, 'changed', `the object or its instruction file changed while rekey read them, whose content did not open together (${outcome.reason}): another writer's write, which wins`, outcome);
}
