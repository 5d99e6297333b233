import type { S3Client } from '@aws-sdk/client-s3';
import { kmsEncryptionContext, rewrapEncryptionContexts } from '../formats/index.js';
import type { KmsBatcher } from '../kms/batcher.js';
import { notRotated, type ObjectOutcome } from './outcome.js';
import { readEncryptedObject } from './read-envelope.js';
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
