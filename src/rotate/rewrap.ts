import type { S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { rewrapEncryptionContexts, withRewrappedKey, type RewrapContexts } from '../formats/index.js';
import type { KmsBatcher, RewrapResult } from '../kms/batcher.js';
import type { UploadJournal } from '../s3/upload-journal.js';
import { fromError, notRotated, rotated, type ObjectOutcome, type ObjectRef } from './outcome.js';
import { readEncryptedObject, type EncryptedObject } from './read-envelope.js';
import type { RotationTarget } from './target.js';
import { writeRewrappedEnvelope } from './write-envelope.js';

export interface RewrapDeps {
  readonly s3: S3Client;
  readonly kms: KmsBatcher;
  /** S3 requests in flight at once for one batch. */
  readonly s3Concurrency?: number;
}

interface Prepared {
  readonly ref: ObjectRef;
  readonly started: number;
  readonly object: EncryptedObject;
  readonly contexts: RewrapContexts;
}

/**
 * `rewrap` of a batch: read every envelope, move all their wrapped data keys to the target key with
 * one KMS ReEncrypt per distinct key, then write each new envelope conditionally. The plaintext data
 * key never leaves KMS, and the body is never read.
 */
export class Rewrapper {
  constructor(
    private readonly deps: RewrapDeps,
    private readonly target: RotationTarget,
  ) {}

  async rotate(refs: readonly ObjectRef[], journal: UploadJournal): Promise<ObjectOutcome[]> {
    const limit = pLimit(this.deps.s3Concurrency ?? 16);
    const outcomes = new Map<ObjectRef, ObjectOutcome>();
    const prepared: Prepared[] = [];
    await Promise.all(
      refs.map((ref) =>
        limit(async () => {
          const started = Date.now();
          try {
            const object = await readEncryptedObject(this.deps.s3, ref);
            prepared.push({ ref, started, object, contexts: rewrapEncryptionContexts(object.envelope, this.target.targetKey) });
          } catch (err) {
            outcomes.set(ref, fromError(ref, 'rewrap', err, { durationMs: Date.now() - started }));
          }
        }),
      ),
    );
    const results = await this.deps.kms.rewrapMany(
      prepared.map((p) => ({
        wrappedKey: p.object.envelope.encryptedDataKey,
        sourceContext: p.contexts.source,
        destinationContext: p.contexts.destination,
      })),
      this.target.targetKeyArn,
    );
    await Promise.all(
      prepared.map((p, i) => limit(async () => outcomes.set(p.ref, await this.finish(p, results[i]!, journal)))),
    );
    return refs.map((ref) => outcomes.get(ref)!);
  }

  private async finish(p: Prepared, result: RewrapResult, journal: UploadJournal): Promise<ObjectOutcome> {
    const { snapshot, envelope } = p.object;
    const facts = {
      format: envelope.version,
      oldEtag: snapshot.etag,
      oldVersionId: snapshot.versionId,
      durationMs: Date.now() - p.started,
    };
    if (!result.ok) return fromError(p.ref, 'rewrap', result.error, facts);
    const keyFacts = { ...facts, oldKeyId: result.sourceKeyId };
    /* Precondition: an object already under the target key is left as it is (design.md invariant 4). */
    if (result.sourceKeyId === this.target.targetKeyArn) {
      return notRotated(p.ref, 'rewrap', 'already-rotated', 'the data key is already under the target key', keyFacts);
    }
    if (!this.target.acceptsSource(result.sourceKeyId)) {
      return notRotated(p.ref, 'rewrap', 'source-key-mismatch', 'the data key is under a key the campaign does not rotate', keyFacts);
    }
    try {
      const rewrapped = withRewrappedKey(envelope, { encryptedDataKey: result.ciphertext, encryptionContext: p.contexts.destination });
      const written = await writeRewrappedEnvelope(this.deps.s3, p.object, rewrapped, journal);
      return rotated(p.ref, 'rewrap', {
        ...keyFacts,
        newFormat: envelope.version,
        newKeyId: result.keyId,
        newEtag: written.etag,
        newVersionId: written.versionId,
        durationMs: Date.now() - p.started,
      });
    } catch (err) {
      return fromError(p.ref, 'rewrap', err, { ...keyFacts, durationMs: Date.now() - p.started });
    }
  }
}
