import type { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { DataKey } from '../crypto/data-key.js';
import type { CipherPool, PoolStream } from '../crypto/pool.js';
import { decryptSpecFor, encryptSpecFor } from '../crypto/specs.js';
import {
  buildEnvelope,
  encryptionContextForNewEnvelope,
  kmsEncryptionContext,
  serialiseEnvelope,
  userEncryptionContext,
  type Envelope,
} from '../formats/index.js';
import type { KmsBatcher } from '../kms/batcher.js';
import { s3Failure } from '../s3/errors.js';
import { uploadReplacement, type ReplacementOptions } from '../s3/replacement-upload.js';
import { readTagging, type ObjectSnapshot } from '../s3/snapshot.js';
import type { UploadJournal } from '../s3/upload-journal.js';
import { fromError, notRotated, rotated, type ObjectOutcome, type ObjectRef, type OutcomeFacts, type TargetFormat } from './outcome.js';
import { readEncryptedObject, type EncryptedObject } from './read-envelope.js';
import type { RotationTarget } from './target.js';
import { mergedMetadata } from './write-envelope.js';

export interface RekeyDeps {
  readonly s3: S3Client;
  readonly kms: KmsBatcher;
  readonly pool: CipherPool;
  /** Objects streamed at once per batch; memory per object is bounded by the pool and the upload parts. */
  readonly objectConcurrency?: number;
  readonly upload?: Omit<ReplacementOptions, 'journal'>;
}

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
  constructor(
    private readonly deps: RekeyDeps,
    private readonly target: RotationTarget,
  ) {}

  async rotate(refs: readonly ObjectRef[], journal: UploadJournal): Promise<ObjectOutcome[]> {
    const limit = pLimit(this.deps.objectConcurrency ?? 4);
    return Promise.all(refs.map((ref) => limit(() => this.rekeyOne(ref, journal))));
  }

  private async rekeyOne(ref: ObjectRef, journal: UploadJournal): Promise<ObjectOutcome> {
    const started = Date.now();
    let facts: OutcomeFacts = {};
    const keys: DataKey[] = [];
    try {
      const object = await readEncryptedObject(this.deps.s3, ref);
      const { snapshot, envelope } = object;
      facts = { format: envelope.version, oldEtag: snapshot.etag, oldVersionId: snapshot.versionId };
      const old = await this.deps.kms.decryptDataKey(envelope.encryptedDataKey, kmsEncryptionContext(envelope));
      const oldKey = DataKey.adopt(old.plaintext);
      keys.push(oldKey);
      facts = { ...facts, oldKeyId: old.keyId };
      /* Precondition: an object already under the target key is left as it is (design.md invariant 4). */
      if (old.keyId === this.target.targetKeyArn) {
        return notRotated(ref, 'rekey', 'already-rotated', 'the data key is already under the target key', { ...facts, durationMs: Date.now() - started });
      }
      if (!this.target.acceptsSource(old.keyId)) {
        return notRotated(ref, 'rekey', 'source-key-mismatch', 'the data key is under a key the campaign does not rotate', { ...facts, durationMs: Date.now() - started });
      }
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
      // Everything awaited goes before the cipher starts: an early cipher error needs a reader attached.
      const tagging = await readTagging(this.deps.s3, snapshot);
      const body = await this.readBody(snapshot);
      const cipher = this.deps.pool.reencrypt(body, {
        decrypt: decryptSpecFor(envelope, oldKey),
        encrypt: encryptSpecFor(newEnvelope, newKey),
      });
      const written = await this.upload(object, newEnvelope, cipher, tagging, journal);
      const note = await this.dropStaleInstructionFile(object);
      return rotated(ref, 'rekey', {
        ...facts,
        newFormat: version,
        newKeyId: fresh.keyId,
        newEtag: written.etag,
        newVersionId: written.versionId,
        bytesRead: snapshot.size,
        bytesWritten: cipher.bytesOut,
        durationMs: Date.now() - started,
      }, note);
    } catch (err) {
      return fromError(ref, 'rekey', err, { ...facts, durationMs: Date.now() - started });
    } finally {
      for (const key of keys) key.destroy();
    }
  }

  /** The body as it was when HEAD saw it: a GET conditional on the same ETag and version. */
  private async readBody(snapshot: ObjectSnapshot): Promise<Readable> {
    try {
      const out = await this.deps.s3.send(
        new GetObjectCommand({ Bucket: snapshot.bucket, Key: snapshot.key, VersionId: snapshot.versionId, IfMatch: snapshot.etag }),
      );
      return out.Body as Readable;
    } catch (err) {
      throw s3Failure(err, `GET s3://${snapshot.bucket}/${snapshot.key}`);
    }
  }

  private upload(object: EncryptedObject, envelope: Envelope, cipher: PoolStream, tagging: string | undefined, journal: UploadJournal) {
    const { snapshot } = object;
    // The new envelope always goes into object metadata: body and key then change in one atomic
    // completion, whereas a separate instruction file could pair a new body with an old key.
    const metadata = mergedMetadata(snapshot, serialiseEnvelope(envelope).objectMetadata);
    return uploadReplacement(
      this.deps.s3,
      { snapshot, body: cipher, metadata, tagging, contentLength: snapshot.size },
      { ...this.deps.upload, journal },
    );
  }

  /**
   * Object metadata wins over an instruction file for every reader, so the old file is only a copy of
   * the old wrapped key. The object is rotated either way; a file that cannot go is said in the message.
   */
  private async dropStaleInstructionFile(object: EncryptedObject): Promise<string> {
    const file = object.instructionFile;
    if (file === undefined) return 'rotated';
    try {
      // Conditional: a file another writer replaced meanwhile is theirs and stays.
      await this.deps.s3.send(new DeleteObjectCommand({ Bucket: object.snapshot.bucket, Key: file.key, IfMatch: file.etag }));
      return 'rotated; the envelope moved from the instruction file into object metadata';
    } catch (err) {
      return `rotated; the old instruction file stays: ${s3Failure(err, `DELETE s3://${object.snapshot.bucket}/${file.key}`).message}`;
    }
  }
}
