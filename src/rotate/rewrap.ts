import type { S3Client } from '@aws-sdk/client-s3';
import pLimit, { type LimitFunction } from 'p-limit';
import { rewrapEncryptionContexts, withRewrappedKey, type RewrapContexts } from '../formats/index.js';
import type { KmsBatcher, RewrapResult } from '../kms/batcher.js';
import { RetryBudget, withBudget } from '../retry/budget.js';
import type { WriteResult } from '../s3/conditional-writes.js';
import type { UploadJournal } from '../s3/upload-journal.js';
import { inspectInstructionEntry, isInstructionFileName, settleInstructionEntry } from './instruction-entry.js';
import { wrappedKeyDigest, type IntentLog, type WriteIntent } from './intent.js';
import { cancelledBeforeStart, fromError, notRotated, rotated, type ObjectOutcome, type ObjectRef, type OutcomeSink, type StopCheck } from './outcome.js';
import { readEncryptedObject, type EncryptedObject } from './read-envelope.js';
import { lostUpdate } from './lost-update.js';
import { landedWrite, recoveredOutcome, replacementBase, writtenBy } from './recover.js';
import { settleLostWrite } from './rotated-meanwhile.js';
import { noncurrentVersion, replacedBy, ReplacedVersions, settledOutcome, type Replacement } from './replaced-versions.js';
import { modifiedSinceCutoff, notDue, type RotationTarget } from './target.js';
import { writeRewrappedEnvelope } from './write-envelope.js';

export interface RewrapDeps {
  readonly s3: S3Client;
  readonly kms: KmsBatcher;
  /** S3 requests in flight at once for one batch. */
  readonly s3Concurrency?: number;
  readonly stopped?: StopCheck;
}

interface Prepared {
  readonly ref: ObjectRef;
  readonly started: number;
  readonly object: EncryptedObject;
  readonly contexts: RewrapContexts;
}

interface Finished {
  readonly outcome: ObjectOutcome;
  /** Set when the rotation was written: what it wrote and what it left behind. */
  readonly replacement?: Replacement;
}

/**
 * `rewrap` of a batch: each object on its own reads its envelope, moves its wrapped data key to the
 * target key (the KmsBatcher makes one ReEncrypt per distinct key, shared by the objects that wait for
 * it and remembered for later batches), then writes its new envelope conditionally. The plaintext data
 * key never leaves KMS, and the body is never read.
 */
export class Rewrapper {
  private readonly replaced: ReplacedVersions;

  constructor(
    private readonly deps: RewrapDeps,
    private readonly target: RotationTarget,
  ) {
    this.replaced = new ReplacedVersions(deps, target);
  }

  async rotate(refs: readonly ObjectRef[], journal: UploadJournal, onOutcome?: OutcomeSink, intents?: IntentLog): Promise<ObjectOutcome[]> {
    const limit = pLimit(this.deps.s3Concurrency ?? 16);
    // Objects are pipelined rather than run in batch-wide phases (all HEADs, then KMS, then all
    // writes): an S3 slot is held per request, so one object's KMS wait leaves it to another object.
    const settledAll = await Promise.allSettled(
      refs.map(async (ref) => {
        const outcome = await withBudget(new RetryBudget(), async () => this.settle(await this.rotateOne(ref, limit, journal, intents), limit));
        await onOutcome?.(outcome);
        return outcome;
      }),
    );
    // A rejection is not an object's failure (the rate limiter's Redis): the whole batch fails and is
    // retried, but only once every object is settled, so no write of this batch is still running then.
    const rejected = settledAll.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (rejected) throw rejected.reason;
    return settledAll.map((s) => (s as PromiseFulfilledResult<ObjectOutcome>).value);
  }

  /** The outcome of a write intent left by a worker that stopped; undefined when its write did not land. */
  async recover(intent: WriteIntent): Promise<ObjectOutcome | undefined> {
    const landed = await this.recoverWrite(intent);
    return landed && this.settle(landed, pLimit(1));
  }

  private async recoverWrite(intent: WriteIntent): Promise<Finished | undefined> {
    const object = await landedWrite(this.deps.s3, intent);
    if (!object) return undefined;
    const written = writtenBy(intent, object);
    const base = replacementBase(intent, object, written);
    const replaced = replacedBy(base.written.key, intent.replacedVersionId, written.versionId);
    return { outcome: recoveredOutcome(intent, object, written, { bytesWritten: 0 }, ''), replacement: { ...base, replaced } };
  }

  /** The outcome with its replaced versions kept or, verified, purged. */
  private async settle(finished: Finished, limit: LimitFunction): Promise<ObjectOutcome> {
    const { outcome, replacement } = finished;
    if (!replacement) return outcome;
    return settledOutcome(outcome, await limit(() => this.replaced.settle(replacement)), replacement.replaced);
  }

  private async rotateOne(ref: ObjectRef, limit: LimitFunction, journal: UploadJournal, intents: IntentLog | undefined): Promise<Finished> {
    const started = Date.now();
    let prepared: Prepared;
    try {
      if (await limit(async () => (await this.deps.stopped?.()) === true)) return { outcome: cancelledBeforeStart(ref, 'rewrap') };
      if (isInstructionFileName(ref.key)) {
        const entry = await limit(() => inspectInstructionEntry(this.deps.s3, ref));
        if (entry.kind !== 'data') {
          const outcome = await limit(() => settleInstructionEntry(this.deps.s3, ref, 'rewrap', entry, { removeOrphans: this.target.removeOrphanInstructionFiles, intents }));
          return { outcome: { ...outcome, durationMs: Date.now() - started } };
        }
      }
      const object = await limit(() => readEncryptedObject(this.deps.s3, ref));
      const recent = modifiedSinceCutoff(this.target, object.snapshot.lastModified);
      // An age cut-off is told by the date alone: no KMS call for an object rotated since.
      if (recent) return { outcome: notRotated(ref, 'rewrap', 'already-rotated', recent, { format: object.envelope.version, durationMs: Date.now() - started }) };
      prepared = { ref, started, object, contexts: rewrapEncryptionContexts(object.envelope, this.target.targetKey) };
    } catch (err) {
      return { outcome: fromError(ref, 'rewrap', err, { durationMs: Date.now() - started }) };
    }
    const [result] = await this.deps.kms.rewrapMany(
      [
        {
          wrappedKey: prepared.object.envelope.encryptedDataKey,
          sourceContext: prepared.contexts.source,
          destinationContext: prepared.contexts.destination,
        },
      ],
      this.target.targetKeyArn,
    );
    return limit(() => this.finish(prepared, result!, journal, intents));
  }

  private async finish(p: Prepared, result: RewrapResult, journal: UploadJournal, intents: IntentLog | undefined): Promise<Finished> {
    const { snapshot, envelope } = p.object;
    const facts = {
      format: envelope.version,
      oldEtag: snapshot.etag,
      oldVersionId: snapshot.versionId,
      durationMs: Date.now() - p.started,
    };
    if (!result.ok) return { outcome: fromError(p.ref, 'rewrap', result.error, facts) };
    const keyFacts = { ...facts, oldKeyId: result.sourceKeyId };
    /* Precondition: an object already rotated is left as it is (docs/design.md §4.4). */
    const done = notDue(this.target, result.sourceKeyId, snapshot.lastModified);
    if (done) return { outcome: notRotated(p.ref, 'rewrap', 'already-rotated', done, keyFacts) };
    if (!this.target.acceptsSource(result.sourceKeyId)) {
      return { outcome: notRotated(p.ref, 'rewrap', 'source-key-mismatch', 'the data key is under a key the campaign does not rotate', keyFacts) };
    }
    // The ReEncrypt told the version's key; its new ciphertext is dropped, as S3 cannot store it there.
    if (!p.object.current) return { outcome: noncurrentVersion(p.ref, 'rewrap', result.sourceKeyId, keyFacts) };
    const file = p.object.instructionFile;
    const inFile = envelope.location === 'instruction-file' && file !== undefined;
    const intent: WriteIntent = {
      ref: p.ref,
      mode: 'rewrap',
      facts: { ...keyFacts, newFormat: envelope.version, newKeyId: result.keyId, ...(inFile ? { instructionFileOldEtag: file.etag } : {}) },
      location: inFile ? 'instruction-file' : 'object',
      replacedVersionId: inFile ? file.versionId : snapshot.versionId,
      wrappedKeyDigest: wrappedKeyDigest(result.ciphertext),
      at: p.started,
    };
    try {
      const rewrapped = withRewrappedKey(envelope, { encryptedDataKey: result.ciphertext, encryptionContext: p.contexts.destination });
      /* Precondition: the intent is durable before the write can land (docs/design.md §4.9). */
      await intents?.intend(intent);
      const written = await writeRewrappedEnvelope(this.deps.s3, p.object, rewrapped, journal);
      // An envelope kept in an instruction file: only the file changes; the object's columns say so.
      const where = inFile
        ? { newEtag: snapshot.etag, newVersionId: snapshot.versionId, instructionFileOldEtag: file.etag, instructionFileNewEtag: written.etag }
        : { newEtag: written.etag, newVersionId: written.versionId };
      const outcome = rotated(p.ref, 'rewrap', { ...keyFacts, newFormat: envelope.version, newKeyId: result.keyId, ...where, durationMs: Date.now() - p.started });
      const changedKey = inFile ? file.key : snapshot.key;
      const lost = await lostUpdate(this.deps.s3, { bucket: snapshot.bucket, key: changedKey, read: intent.replacedVersionId, written: written.versionId }, outcome);
      if (lost) return { outcome: lost };
      return { outcome, replacement: replacementOf(p.object, written) };
    } catch (err) {
      // A write that failed to answer may have landed all the same (a lost answer, a retried copy).
      const landed = await this.recoverWrite(intent);
      if (landed) return landed;
      return { outcome: await settleLostWrite(this.deps, this.target, fromError(p.ref, 'rewrap', err, { ...keyFacts, durationMs: Date.now() - p.started })) };
    }
  }
}

/**
 * A rewrap rewrites the object's metadata (a new object version) or, for an envelope kept in an
 * instruction file, only that file (a new version of the file; the object is untouched).
 */
function replacementOf(object: EncryptedObject, written: WriteResult): Replacement {
  const { snapshot, instructionFile: file } = object;
  const inFile = object.envelope.location === 'instruction-file' && file !== undefined;
  const key = inFile ? file.key : snapshot.key;
  return {
    bucket: snapshot.bucket,
    written: { location: inFile ? 'instruction-file' : 'object', key, versionId: written.versionId, etag: written.etag },
    objectMetadata: snapshot.metadata,
    replaced: replacedBy(key, inFile ? file.versionId : snapshot.versionId, written.versionId),
  };
}
