import type { S3Client } from '@aws-sdk/client-s3';
import { asRekeyError, RekeyError } from '../errors.js';
import { inspectMetadata, kmsEncryptionContext, parseEnvelope, requireKmsWrap, type KmsEnvelope } from '../formats/index.js';
import type { KmsBatcher } from '../kms/batcher.js';
import { s3Failure } from '../s3/errors.js';
import { headObject, readSmallObject } from '../s3/snapshot.js';
import { deleteVersion } from '../s3/versioning.js';
import { notRotated, type Mode, type ObjectOutcome, type ObjectRef, type OutcomeFacts, type VersionRef } from './outcome.js';
import type { RotationTarget } from './target.js';

/**
 * Versioned buckets. A rotation writes a new version of the object (or of its instruction file), and
 * S3 keeps the version it replaced: the same content, still under the old key. A noncurrent version
 * cannot be rewritten in place, and writing a rotated copy of it on top of the key would make old
 * content current (readers see it, a concurrent writer's update can be overwritten when the current
 * version is put back, version order and lifecycle clocks change). So rekey never rewrites noncurrent
 * versions. What it can do safely is delete the exact version its own rotation replaced, because that
 * content lives on in the new version: only with --purge-replaced-versions, only by version id, and
 * only after the new version is verified.
 */

/** What one rotation wrote, and the versions it left behind under the old key. */
export interface Replacement {
  readonly bucket: string;
  /** The version the rotation wrote: the object's, or its instruction file's when only that changed. */
  readonly written: WrittenVersion;
  /** The object's metadata, which a V3 envelope split with its instruction file needs for parsing. */
  readonly objectMetadata: Readonly<Record<string, string>>;
  readonly replaced: readonly VersionRef[];
}

export interface WrittenVersion {
  readonly location: 'object' | 'instruction-file';
  readonly key: string;
  readonly versionId: string | undefined;
  readonly etag: string | undefined;
}

export type Settlement =
  /** Nothing was left behind: an unversioned bucket, or a store that rewrote the version in place. */
  | { readonly kind: 'none' }
  | { readonly kind: 'kept'; readonly note: string }
  | { readonly kind: 'purged'; readonly versions: readonly VersionRef[]; readonly note: string }
  /** The new version failed verification: it may be unreadable, so every old version stays. */
  | { readonly kind: 'unverified'; readonly error: RekeyError };

export interface ReplacedVersionsDeps {
  readonly s3: S3Client;
  readonly kms: KmsBatcher;
}

/**
 * The version a write left behind: the one it read, unless the store rewrote that one in place. Only
 * when both ids are known: a write that reports no version may have replaced the very version read
 * (an unversioned or suspended bucket), and deleting that one would delete the object.
 */
export function replacedBy(key: string, read: string | undefined, written: string | undefined): VersionRef[] {
  return read !== undefined && written !== undefined && read !== written ? [{ key, versionId: read }] : [];
}

export function describeVersions(versions: readonly VersionRef[]): string {
  return versions.map((v) => `${v.key}?versionId=${v.versionId}`).join(', ');
}

export class ReplacedVersions {
  constructor(
    private readonly deps: ReplacedVersionsDeps,
    private readonly target: Pick<RotationTarget, 'targetKeyArn' | 'purgeReplacedVersions'>,
  ) {}

  /** Settles one rotation's replaced versions: kept with a note, or verified and deleted. */
  async settle(item: Replacement): Promise<Settlement> {
    if (item.replaced.length === 0) return { kind: 'none' };
    if (!this.target.purgeReplacedVersions) {
      return { kind: 'kept', note: `replaced version stays under the old key until deleted (--purge-replaced-versions): ${describeVersions(item.replaced)}` };
    }
    let failure: RekeyError | undefined;
    try {
      failure = await this.verify(item);
    } catch (err) {
      // The rate limiter's Redis failed, not a version: the rotation stands, its old versions stay.
      return { kind: 'kept', note: `replaced version kept, it could not be verified: ${err instanceof Error ? err.message : String(err)}` };
    }
    return failure ? { kind: 'unverified', error: failure } : this.purge(item);
  }

  /**
   * A new version is verified when it is there with the ETag the write returned, its envelope parses,
   * and KMS re-encrypts its wrapped key from the target key under its stored context: proof that a
   * reader with the target key can unwrap it, without a plaintext data key. Undefined means verified.
   */
  private async verify(item: Replacement): Promise<RekeyError | undefined> {
    let envelope: KmsEnvelope;
    try {
      envelope = await this.readWritten(item);
    } catch (err) {
      return asRekeyError(err);
    }
    const context = kmsEncryptionContext(envelope);
    const [probe] = await this.deps.kms.rewrapMany(
      [{ wrappedKey: envelope.encryptedDataKey, sourceContext: context, destinationContext: context, sourceKeyId: this.target.targetKeyArn }],
      this.target.targetKeyArn,
    );
    return probe!.ok ? undefined : probe!.error;
  }

  private async readWritten(item: Replacement): Promise<KmsEnvelope> {
    const { bucket, written } = item;
    /* Precondition: a write that reported no version cannot be told apart from a later one. */
    if (written.versionId === undefined) throw new RekeyError('s3-error', `the write of s3://${bucket}/${written.key} reported no version id`);
    let envelope;
    let etag: string;
    if (written.location === 'object') {
      const snapshot = await headObject(this.deps.s3, bucket, written.key, written.versionId);
      const inspection = inspectMetadata(snapshot.metadata);
      if (inspection.kind !== 'envelope') throw new RekeyError('bad-metadata', 'the new version carries no envelope in its metadata');
      [envelope, etag] = [inspection.envelope, snapshot.etag];
    } else {
      const file = await readSmallObject(this.deps.s3, bucket, written.key, undefined, written.versionId);
      if (file === undefined) throw new RekeyError('gone', `the new instruction file s3://${bucket}/${written.key} is gone`);
      [envelope, etag] = [parseEnvelope(item.objectMetadata, file.body), file.etag];
    }
    /* Precondition: the version read is the one written, byte for byte. */
    if (written.etag !== undefined && etag !== written.etag) {
      throw new RekeyError('changed', `the new version of s3://${bucket}/${written.key} has ETag ${etag}, not ${written.etag}`);
    }
    requireKmsWrap(envelope);
    return envelope;
  }

  /** Deletes by version id only: a version id names one immutable version, so nothing else can go. */
  private async purge(item: Replacement): Promise<Settlement> {
    const deleted: VersionRef[] = [];
    for (const version of item.replaced) {
      try {
        await deleteVersion(this.deps.s3, item.bucket, version.key, version.versionId);
      } catch (err) {
        const failure = s3Failure(err, `DELETE s3://${item.bucket}/${version.key}?versionId=${version.versionId}`);
        // Already gone is as good as deleted; anything else leaves the version for the user.
        if (failure.reason !== 'gone') {
          const done = deleted.length ? `; deleted ${describeVersions(deleted)}` : '';
          return { kind: 'kept', note: `replaced version kept, still under the old key: ${failure.message}${done}` };
        }
      }
      deleted.push(version);
    }
    return { kind: 'purged', versions: deleted, note: `replaced version deleted: ${describeVersions(deleted)}` };
  }
}

/** A noncurrent version under a key the campaign rotates: reported, never written (see above). */
export function noncurrentVersion(ref: ObjectRef, mode: Mode, keyArn: string, facts: OutcomeFacts): ObjectOutcome {
  const message = `a noncurrent version cannot be rewritten in place; it stays under ${keyArn} until it is deleted (rekey audit --include-versions lists it)`;
  return notRotated(ref, mode, 'noncurrent-version', message, facts);
}

/** The outcome of a rotation once its replaced versions are settled. */
export function settledOutcome(outcome: ObjectOutcome, settlement: Settlement, replaced: readonly VersionRef[]): ObjectOutcome {
  switch (settlement.kind) {
    case 'none':
      return outcome;
    case 'kept':
      return { ...outcome, message: `${outcome.message}; ${settlement.note}` };
    case 'purged':
      return { ...outcome, message: `${outcome.message}; ${settlement.note}`, purgedVersions: settlement.versions };
    case 'unverified': {
      const message = `the new version did not verify, so the replaced version was kept (${describeVersions(replaced)}): ${settlement.error.message}`;
      // The facts of the rotation stay (new ETag and version id): the report must say what was written.
      return notRotated(outcome.ref, outcome.mode, settlement.error.reason, message, outcome);
    }
  }
}
