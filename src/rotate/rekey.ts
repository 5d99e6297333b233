import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { DataKey } from '../crypto/data-key.js';
import { buildEnvelope } from '../crypto/new-envelope.js';
import type { CipherPool, PoolStream } from '../crypto/pool.js';
import { decryptSpecFor, encryptSpecFor } from '../crypto/specs.js';
import { createDecryptStream } from '../crypto/streams.js';
import {
  CBC,
  encryptionContextForNewEnvelope,
  kmsEncryptionContext,
  parseEnvelope,
  requireKmsWrap,
  userEncryptionContext,
  type Envelope,
  type KmsEnvelope,
} from '../formats/index.js';
import type { KmsBatcher } from '../kms/batcher.js';
import { CipherError, RekeyError } from '../errors.js';
import { RetryBudget, withBudget } from '../retry/budget.js';
import { s3Failure } from '../s3/errors.js';
import { deleteIfUnchanged, type WriteResult } from '../s3/conditional-writes.js';
import { uploadReplacement, type ReplacementOptions } from '../s3/replacement-upload.js';
import { headObject, readSmallObject, readSnapshotBody, type ObjectSnapshot, type OpenedBody } from '../s3/snapshot.js';
import { readTagging } from '../s3/tagging.js';
import type { UploadJournal } from '../s3/upload-journal.js';
import { inspectInstructionEntry, isInstructionFileName, settleInstructionEntry } from './instruction-entry.js';
import { wrappedKeyDigest, type IntentLog, type WriteIntent } from './intent.js';
import { cancelledBeforeStart, fromError, notRotated, rotated, type ObjectOutcome, type ObjectRef, type OutcomeFacts, type OutcomeSink, type StopCheck, type TargetFormat } from './outcome.js';
import { instructionKey, openEncryptedObject, type EncryptedObject } from './read-envelope.js';
import { lostUpdate } from './lost-update.js';
import { landedWrite, recoveredOutcome, replacementBase, writtenBy } from './recover.js';
import { changedWhileRead, settleLostWrite } from './rotated-meanwhile.js';
import { noncurrentVersion, replacedBy, ReplacedVersions, settledOutcome, type Replacement } from './replaced-versions.js';
import { exactLength } from './body-length.js';
import { modifiedSinceCutoff, notDue, type RotationTarget } from './target.js';
import { placeEnvelope, putInstructionFile } from './write-envelope.js';

export interface RekeyDeps {
  readonly s3: S3Client;
  readonly kms: KmsBatcher;
  readonly pool: CipherPool;
  /** Objects streamed at once per batch; memory per object is bounded by the pool and the upload parts. */
  readonly objectConcurrency?: number;
  readonly upload?: Omit<ReplacementOptions, 'journal'>;
  readonly stopped?: StopCheck;
}

const UNAUTHENTICATED_SOURCE =
  'legacy AES/CBC content has no authentication: a wrong key or damage can pass unseen and would then carry a valid GCM tag; ' +
  'rekey it with --allow-unauthenticated-source, or rewrap it (the body stays as it is)';

/** V1 is read-only: a rekey writes V2 unless V3 is asked for; otherwise the source's version is kept. */
export function targetVersion(source: Envelope['version'], wanted: TargetFormat): 'v2' | 'v3' {
  if (wanted !== 'same') return wanted;
  return source === 'v3' ? 'v3' : 'v2';
}

/**
 * `rekey` of a batch: each object is streamed from S3, decrypted under its old data key and encrypted
 * under a fresh one in a cipher thread, and uploaded over itself. The upload completes only after the
 * old content authenticated, and only if the object is still the version that was read.
 */
export class Rekeyer {
  private readonly replaced: ReplacedVersions;

  constructor(
    private readonly deps: RekeyDeps,
    private readonly target: RotationTarget,
  ) {
    this.replaced = new ReplacedVersions(deps, target);
  }

  async rotate(refs: readonly ObjectRef[], journal: UploadJournal, onOutcome?: OutcomeSink, intents?: IntentLog): Promise<ObjectOutcome[]> {
    const limit = pLimit(this.deps.objectConcurrency ?? 4);
    return Promise.all(
      refs.map((ref) =>
        limit(async () => {
          const outcome = (await this.deps.stopped?.()) ? cancelledBeforeStart(ref, 'rekey') : await withBudget(new RetryBudget(), () => this.rekeyOne(ref, journal, intents));
          await onOutcome?.(outcome);
          return outcome;
        }),
      ),
    );
  }

  /**
   * The outcome of a write intent left by a worker that stopped: `rotated` with the intent's facts when
   * the object carries its new wrapped key (the stale instruction file dropped and replaced versions
   * settled as the writer would have), undefined when the write did not land.
   */
  async recover(intent: WriteIntent): Promise<ObjectOutcome | undefined> {
    const object = (await landedWrite(this.deps.s3, intent)) ?? (await this.completeInstructionFile(intent));
    return object && this.recordLanded(intent, object);
  }

  /**
   * With no room in metadata a rekey writes the body, then the instruction file with the new wrapped
   * key: a worker stopped in between leaves a body that no stored key opens. Its intent kept that file.
   * When the object's body is one it opens (authenticated under the new data key), the file is put now
   * and the write has landed; a body it does not open is another writer's, and left to the rotation.
   */
  private async completeInstructionFile(intent: WriteIntent): Promise<EncryptedObject | undefined> {
    const pending = intent.pendingInstructionFile;
    if (intent.location !== 'instruction-file' || pending === undefined) return undefined;
    const { bucket, key } = intent.ref;
    const snapshot = await headObject(this.deps.s3, bucket, key);
    /* Precondition: an object still at the version the rotation read has not had its body written. */
    if (snapshot.etag === intent.facts.oldEtag) return undefined;
    const envelope = parseEnvelope(snapshot.metadata, pending);
    requireKmsWrap(envelope);
    if (!(await this.opensUnder(snapshot, envelope))) return undefined;
    const fileKey = instructionKey(key);
    const file = await readSmallObject(this.deps.s3, bucket, fileKey);
    await putInstructionFile(this.deps.s3, { bucket, key: fileKey, body: pending }, file && { ...file, key: fileKey }, snapshot);
    return landedWrite(this.deps.s3, intent);
  }

  /** Whether the object's body authenticates under the envelope's data key; the plaintext is discarded here. */
  private async opensUnder(snapshot: ObjectSnapshot, envelope: KmsEnvelope): Promise<boolean> {
    const plain = await this.deps.kms.decryptDataKey(envelope.encryptedDataKey, kmsEncryptionContext(envelope));
    const key = DataKey.adopt(plain.plaintext);
    try {
      await pipeline(await this.readBody(snapshot), createDecryptStream(decryptSpecFor(envelope, key)), new Writable({ write: (_chunk, _enc, done) => done() }));
      return true;
    } catch (err) {
      if (err instanceof CipherError) return false;
      throw err;
    } finally {
      key.destroy();
    }
  }

  /** The outcome of a write that landed, as its writer would have recorded it. */
  private async recordLanded(intent: WriteIntent, object: EncryptedObject): Promise<ObjectOutcome> {
    const written = writtenBy(intent, object);
    const file = intent.instructionFile;
    const stale: FileSettlement = file ? await this.dropStaleInstructionFile(object.snapshot.bucket, file) : { note: '' };
    const outcome = recoveredOutcome(intent, object, written, { bytesWritten: object.snapshot.size }, stale.note);
    const base = replacementBase(intent, object, written);
    // The version the write replaced at its own key; and a rekey always rewrites the body, so with the
    // envelope in the instruction file the object's replaced version is left behind too.
    const replaced = [
      ...replacedBy(base.written.key, intent.replacedVersionId, written.versionId),
      ...(intent.location === 'instruction-file' ? replacedBy(intent.ref.key, intent.facts.oldVersionId, object.snapshot.versionId) : []),
      ...(file ? replacedBy(file.key, file.versionId, stale.fileVersionAfter) : []),
    ];
    return settledOutcome(outcome, await this.replaced.settle({ ...base, replaced }), replaced);
  }

  private async rekeyOne(ref: ObjectRef, journal: UploadJournal, intents?: IntentLog): Promise<ObjectOutcome> {
    const started = Date.now();
    let facts: OutcomeFacts = {};
    let intent: WriteIntent | undefined;
    let read: EncryptedObject | undefined;
    let opened: OpenedBody | undefined;
    const keys: DataKey[] = [];
    try {
      if (isInstructionFileName(ref.key)) {
        const entry = await inspectInstructionEntry(this.deps.s3, ref);
        if (entry.kind !== 'data') return { ...(await settleInstructionEntry(this.deps.s3, ref, 'rekey', entry, { removeOrphans: this.target.removeOrphanInstructionFiles, intents })), durationMs: Date.now() - started };
      }
      const { object, body: early } = await openEncryptedObject(this.deps.s3, ref);
      [read, opened] = [object, early];
      const { snapshot, envelope } = object;
      facts = { format: envelope.version, oldEtag: snapshot.etag, oldVersionId: snapshot.versionId, sourceAuthenticated: envelope.contentCipher !== CBC };
      // An age cut-off is told by the date alone: no plaintext data key for an object rotated since.
      const recent = modifiedSinceCutoff(this.target, snapshot.lastModified);
      if (recent) return notRotated(ref, 'rekey', 'already-rotated', recent, { ...facts, durationMs: Date.now() - started });
      /* Precondition: unauthenticated content gets an authenticated tag only when the campaign opted in. */
      if (!facts.sourceAuthenticated && !this.target.allowUnauthenticatedSource) {
        return notRotated(ref, 'rekey', 'unauthenticated-source', UNAUTHENTICATED_SOURCE, { ...facts, durationMs: Date.now() - started });
      }
      const old = await this.deps.kms.decryptDataKey(envelope.encryptedDataKey, kmsEncryptionContext(envelope));
      const oldKey = DataKey.adopt(old.plaintext);
      keys.push(oldKey);
      facts = { ...facts, oldKeyId: old.keyId };
      /* Precondition: an object already rotated is left as it is (docs/design.md §4.4). */
      const done = notDue(this.target, old.keyId, snapshot.lastModified);
      if (done) return notRotated(ref, 'rekey', 'already-rotated', done, { ...facts, durationMs: Date.now() - started });
      if (!this.target.acceptsSource(old.keyId)) {
        return notRotated(ref, 'rekey', 'source-key-mismatch', 'the data key is under a key the campaign does not rotate', { ...facts, durationMs: Date.now() - started });
      }
      if (!object.current) return noncurrentVersion(ref, 'rekey', old.keyId, { ...facts, durationMs: Date.now() - started });
      const version = targetVersion(envelope.version, this.target.targetFormat);
      const context = encryptionContextForNewEnvelope(version, userEncryptionContext(envelope));
      const fresh = await this.deps.kms.generateDataKey(this.target.targetKeyArn, context);
      const newKey = DataKey.adopt(fresh.plaintext);
      keys.push(newKey);
      const newEnvelope = buildEnvelope({
        version,
        encryptedDataKey: fresh.wrappedKey,
        encryptionContext: context,
        dataKey: newKey,
        ...(envelope.unencryptedContentLength === undefined ? {} : { unencryptedContentLength: envelope.unencryptedContentLength }),
      });
      const placed = placeEnvelope(snapshot, newEnvelope);
      // Everything awaited goes before the cipher starts: an early cipher error needs a reader attached.
      const fileNow = placed.instructionFile === undefined ? undefined : object.instructionFile ?? (await this.currentInstructionFile(snapshot));
      const tagging = await readTagging(this.deps.s3, snapshot);
      const file = object.instructionFile;
      const inFile = placed.instructionFile !== undefined;
      intent = {
        ref,
        mode: 'rekey',
        facts: { ...facts, newFormat: version, newKeyId: fresh.keyId, bytesRead: snapshot.size, ...(file ? { instructionFileOldEtag: file.etag } : {}) },
        // With no room in metadata the new envelope goes to the instruction file, which then proves the write.
        location: inFile ? 'instruction-file' : 'object',
        replacedVersionId: inFile ? fileNow?.versionId : snapshot.versionId,
        wrappedKeyDigest: wrappedKeyDigest(fresh.wrappedKey),
        instructionFile: !inFile && file ? { key: file.key, etag: file.etag, versionId: file.versionId } : undefined,
        pendingInstructionFile: placed.instructionFile,
        at: started,
      };
      /* Precondition: the intent is durable before the write can land (docs/design.md §4.9). */
      await intents?.intend(intent);
      const body = await this.readBody(snapshot, opened);
      const cipher = this.deps.pool.reencrypt(body, {
        decrypt: decryptSpecFor(envelope, oldKey),
        encrypt: encryptSpecFor(newEnvelope, newKey),
      });
      const written = await this.upload(object, placed.metadata, cipher, tagging, journal);
      const stale =
        placed.instructionFile !== undefined
          ? await this.writeInstructionFile(object, placed.instructionFile, fileNow)
          : file
            ? await this.dropStaleInstructionFile(snapshot.bucket, file)
            : { note: 'rotated' };
      const outcome = rotated(ref, 'rekey', {
        ...facts,
        newFormat: version,
        newKeyId: fresh.keyId,
        newEtag: written.etag,
        newVersionId: written.versionId,
        ...(file ? { instructionFileOldEtag: file.etag } : {}),
        bytesRead: snapshot.size,
        bytesWritten: cipher.bytesOut,
        durationMs: Date.now() - started,
      }, stale.note);
      const lost = await lostUpdate(this.deps.s3, { bucket: snapshot.bucket, key: snapshot.key, read: snapshot.versionId, written: written.versionId }, outcome);
      if (lost) return lost;
      const replacement = replacementOf(object, written, stale, placed.metadata);
      return settledOutcome(outcome, await this.replaced.settle(replacement), replacement.replaced);
    } catch (err) {
      // A write that failed to answer may have landed all the same (a lost answer, a retried completion).
      // Only a landed write: completing an instruction file is for a batch taken over, not a failed PUT.
      const object = intent && (await landedWrite(this.deps.s3, intent));
      const landed = intent && object && (await this.recordLanded(intent, object));
      if (landed) return landed;
      const failed = await changedWhileRead(this.deps.s3, read, fromError(ref, 'rekey', err, { ...facts, durationMs: Date.now() - started }));
      return await settleLostWrite(this.deps, this.target, failed);
    } finally {
      for (const key of keys) key.destroy();
      // An object skipped before its body was needed (rotated already, another key, ...) lets its GET go.
      opened?.release(read?.snapshot.size ?? Number.POSITIVE_INFINITY);
    }
  }

  /**
   * The body exactly as the snapshot describes it: the GET that made the snapshot when its body is still
   * there to read, else a GET conditional on the same ETag and version.
   */
  private async readBody(snapshot: ObjectSnapshot, opened?: OpenedBody): Promise<Readable> {
    const body = opened?.take() ?? (await readSnapshotBody(this.deps.s3, snapshot));
    return exactLength(body, snapshot.size, `GET s3://${snapshot.bucket}/${snapshot.key}`);
  }

  private upload(object: EncryptedObject, metadata: Record<string, string>, cipher: PoolStream, tagging: string | undefined, journal: UploadJournal) {
    const { snapshot } = object;
    return uploadReplacement(
      this.deps.s3,
      { snapshot, body: cipher, metadata, tagging, contentLength: snapshot.size },
      { ...this.deps.upload, journal },
    );
  }

  /** The instruction file a new one replaces when the object's own envelope was in its metadata. */
  private async currentInstructionFile(snapshot: ObjectSnapshot): Promise<InstructionFile | undefined> {
    const key = instructionKey(snapshot.key);
    const file = await readSmallObject(this.deps.s3, snapshot.bucket, key);
    return file && { ...file, key };
  }

  /**
   * The body is written first, then its instruction file, conditional on the file read: the other
   * order would pair the old body with the new key for as long as the upload takes; this one only
   * for the one small PUT. Should that PUT fail, the object cannot be read until the file is put, so
   * the failure says what to put there (a wrapped key is ciphertext, as in any instruction file).
   */
  private async writeInstructionFile(object: EncryptedObject, body: string, previous: InstructionFile | undefined): Promise<FileSettlement> {
    const { bucket, key } = object.snapshot;
    const fileKey = instructionKey(key);
    try {
      const written = await putInstructionFile(this.deps.s3, { bucket, key: fileKey, body }, previous, object.snapshot);
      return { note: `rotated; the envelope is in the instruction file, object metadata has no room for it`, file: { key: fileKey, versionId: written.versionId, etag: written.etag } };
    } catch (err) {
      const cause = s3Failure(err, `PUT s3://${bucket}/${fileKey}`).message;
      throw new RekeyError('incomplete-write', `the new body of s3://${bucket}/${key} is written but not its instruction file (${cause}); put this in s3://${bucket}/${fileKey} to read it: ${body}`);
    }
  }

  /**
   * Object metadata wins over an instruction file for every reader, so the old file is only a copy of
   * the old wrapped key. The object is rotated either way; a file that cannot go is said in the message.
   * In a versioned bucket the delete puts a marker on top of the file's last version, which stays.
   */
  private async dropStaleInstructionFile(bucket: string, file: { key: string; etag: string }): Promise<FileSettlement> {
    try {
      // Conditional: a file another writer replaced meanwhile is theirs and stays.
      const out = await deleteIfUnchanged(this.deps.s3, { bucket, key: file.key, etag: file.etag });
      return { note: 'rotated; the envelope moved from the instruction file into object metadata', fileVersionAfter: out.deleteMarkerVersionId };
    } catch (err) {
      const failure = s3Failure(err, `DELETE s3://${bucket}/${file.key}`);
      // Gone already: dropped by the writer whose intent this recovery completes.
      if (failure.reason === 'gone') return { note: 'rotated; the envelope moved from the instruction file into object metadata' };
      return { note: `rotated; the old instruction file stays: ${failure.message}` };
    }
  }
}

type InstructionFile = NonNullable<EncryptedObject['instructionFile']>;

/** What became of the instruction file: deleted (a delete marker in a versioned bucket) or rewritten. */
interface FileSettlement {
  readonly note: string;
  readonly fileVersionAfter?: string | undefined;
  readonly file?: { readonly key: string; readonly versionId: string | undefined; readonly etag: string | undefined };
}

/**
 * A rekey writes a new object version; in a versioned bucket the version it read stays, and so does
 * the instruction file's last version once the file is deleted (a delete marker hides it) or
 * rewritten. With a new instruction file, that file is what a verification reads.
 */
function replacementOf(object: EncryptedObject, written: WriteResult, settled: FileSettlement, metadata: Record<string, string>): Replacement {
  const { snapshot, instructionFile: old } = object;
  const file = settled.file;
  return {
    bucket: snapshot.bucket,
    written: file ? { location: 'instruction-file', ...file } : { location: 'object', key: snapshot.key, versionId: written.versionId, etag: written.etag },
    objectMetadata: metadata,
    replaced: [
      ...replacedBy(snapshot.key, snapshot.versionId, written.versionId),
      ...(old ? replacedBy(old.key, old.versionId, file?.versionId ?? settled.fileVersionAfter) : []),
    ],
  };
}
