import type { S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { FormatError, reasonOf, type ReasonCode } from '../errors.js';
import { inspectMetadata, isKmsWrap, parseInstructionFileKey, type FormatVersion, type WrappedKey } from '../formats/index.js';
import { wrapDigest, type KmsBatcher, type RewrapRequest } from '../kms/batcher.js';
import { inspectInstructionEntry, isInstructionFileName } from '../rotate/instruction-entry.js';
import { instructionKey } from '../rotate/read-envelope.js';
import { headIfExists, headObject, readSmallObject } from '../s3/snapshot.js';
import { listEntries, type ScopedEntry } from '../s3/listing.js';

/**
 * `rekey audit`: which objects, versions and instruction files still hold a data key wrapped under a
 * KMS key, so the user knows when the key can be scheduled for deletion. The key of a wrapped data key
 * is learnt without ever holding a plaintext data key: KMS ReEncrypt of the wrapped key (with its
 * stored context) to a probe key answers with `SourceKeyId`, and the new ciphertext is dropped. The
 * legacy `kms` wrap names its key in the context (`kms_cmk_id`), but a context is only what a writer
 * claimed, so it is probed all the same. Objects sharing a data key cost one call: per page through
 * KmsBatcher.rewrapMany, and across pages through a bounded cache.
 */

export interface UsageScanOptions {
  readonly bucket: string;
  readonly prefix?: string;
  /** The key asked about, as KMS names keys in responses (an ARN). */
  readonly keyArn: string;
  /** ReEncrypt's destination; the audited key by default. Another key when that one refuses ReEncryptTo. */
  readonly probeKeyId?: string;
  /** Noncurrent versions too (ListObjectVersions). */
  readonly includeVersions?: boolean;
  /** S3 requests in flight at once. */
  readonly s3Concurrency?: number;
  /** Distinct wrapped keys remembered across pages. */
  readonly cacheSize?: number;
}

/** Options of a scan over any scope (a campaign's sources): `keyArn` only names the summary. */
export interface ScopeScanOptions extends Omit<UsageScanOptions, 'bucket' | 'prefix'> {
  /** Which keys count as "under the key"; by default `keyArn` alone. */
  readonly matches?: (keyId: string) => boolean;
  /**
   * Whether instruction files are entries of the scope (a listing) or only reached through their
   * objects (a manifest naming objects): then an object is told by the file it reads its key from.
   */
  readonly filesListed: boolean;
}

export interface UsageScanDeps {
  readonly s3: S3Client;
  /** Paced by the rate limiter it was built with. */
  readonly kms: KmsBatcher;
}

/**
 * Where a wrapped key was found: in an object's metadata, in an instruction file its object reads, or
 * in an orphan instruction file that no object reads any more (instruction-entry.ts).
 */
export type CarrierKind = 'object' | 'instruction-file' | 'orphan-instruction-file';

/** One object, version or instruction file that still depends on the key, or that could not be told. */
export interface UsageFinding {
  readonly status: 'under-key' | 'unreadable';
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  readonly isLatest: boolean;
  readonly kind: CarrierKind;
  readonly format: FormatVersion | undefined;
  readonly wrapAlgorithm: string | undefined;
  /** The key KMS named as the wrapped key's (`under-key`). */
  readonly keyId: string | undefined;
  /** `kms_cmk_id` of a legacy `kms` wrap: the key the writer claimed. */
  readonly namedKeyId: string | undefined;
  readonly reason: ReasonCode | undefined;
  readonly message: string | undefined;
  readonly lastModified: string | undefined;
}

export interface UsageSummary {
  readonly bucket: string;
  readonly prefix: string;
  readonly keyArn: string;
  readonly includeVersions: boolean;
  readonly scanned: { objects: number; noncurrentVersions: number; instructionFiles: number };
  readonly underKey: { total: number; noncurrent: number; byFormat: Record<string, number>; byKind: Record<CarrierKind, number> };
  /** KMS-wrapped under another key. */
  readonly otherKeys: number;
  /** Wrapped with a raw AES or RSA key, not KMS. */
  readonly notKms: number;
  readonly notEncrypted: number;
  /** Objects whose wrapped key lives in `<key>.instruction`, which is audited as an entry of its own. */
  readonly keyInInstructionFile: number;
  /** Listed, then deleted before they were read. */
  readonly gone: number;
  readonly unreadable: { total: number; byReason: Record<string, number> };
  /** ReEncrypt probes sent: one per distinct wrapped key and context. */
  readonly kmsProbes: number;
}

/** Entries that are not under any KMS key the scan can ask about: only counted. */
type PassedOver = 'not-kms' | 'not-encrypted' | 'in-instruction-file' | 'gone';

/** What one entry turned out to be before KMS is asked. */
type Classified = { readonly carrier: CarrierKind } & (
  | { readonly kind: 'wrapped'; readonly wrapped: WrappedKey }
  | { readonly kind: PassedOver }
  | { readonly kind: 'unreadable'; readonly reason: ReasonCode; readonly message: string }
);

type ProbeResult = { readonly ok: true; readonly keyId: string } | { readonly ok: false; readonly reason: ReasonCode; readonly message: string };

/** Audits a bucket (or a prefix), page by page; memory stays one page plus the probe cache. */
export async function scanKeyUsage(deps: UsageScanDeps, options: UsageScanOptions, onFinding: (finding: UsageFinding) => void): Promise<UsageSummary> {
  const at = { bucket: options.bucket, prefix: options.prefix ?? '' };
  const pages = async function* () {
    for await (const page of listEntries(deps.s3, at, undefined, options.includeVersions === true)) yield page.entries.map((e) => ({ ...e, bucket: at.bucket }));
  };
  const summary = await scanScope(deps, pages(), { ...options, filesListed: true }, onFinding);
  return { ...summary, bucket: at.bucket, prefix: at.prefix };
}

/**
 * The key-usage scan over any scope, page by page: `rekey audit` over a listing, and a campaign's
 * closing verification over its sources. Memory stays one page plus the probe cache.
 */
export async function scanScope(deps: UsageScanDeps, pages: AsyncIterable<readonly ScopedEntry[]>, options: ScopeScanOptions, onFinding: (finding: UsageFinding) => void): Promise<UsageSummary> {
  const tally = new Tally(options);
  const probes = new ProbeCache(options.cacheSize ?? 100_000);
  const limit = pLimit(options.s3Concurrency ?? 16);
  for await (const entries of pages) {
    const classified = await Promise.all(entries.map((entry) => limit(() => classify(deps.s3, entry, options.filesListed))));
    await probe(deps.kms, probes, classified, options.probeKeyId ?? options.keyArn);
    entries.forEach((entry, i) => {
      const finding = tally.count(entry, classified[i]!, probes);
      if (finding) onFinding(finding);
    });
  }
  return tally.summary(probes.sent);
}

async function classify(s3: S3Client, entry: ScopedEntry, filesListed: boolean): Promise<Classified> {
  const carrier = isInstructionFileName(entry.key) ? 'instruction-file' : 'object';
  try {
    if (carrier === 'instruction-file') {
      const file = await inspectInstructionEntry(s3, { bucket: entry.bucket, key: entry.key, versionId: entry.isLatest ? undefined : entry.versionId });
      if (file.kind === 'in-use') return wrappedIn('instruction-file', file.wrapped);
      if (file.kind === 'orphan') return wrappedIn('orphan-instruction-file', file.wrapped);
    }
    return await classifyObject(s3, entry, filesListed);
  } catch (err) {
    const reason = reasonOf(err);
    if (reason === 'gone') return { kind: 'gone', carrier: 'object' };
    return { kind: 'unreadable', carrier, reason, message: err instanceof Error ? err.message : String(err) };
  }
}

async function classifyObject(s3: S3Client, entry: ScopedEntry, filesListed: boolean): Promise<Classified> {
  const bucket = entry.bucket;
  const snapshot = await headObject(s3, bucket, entry.key, entry.versionId);
  let inspection;
  try {
    inspection = inspectMetadata(snapshot.metadata);
  } catch (err) {
    if (err instanceof FormatError) return { kind: 'unreadable', carrier: 'object', reason: err.reason, message: err.message };
    throw err;
  }
  if (inspection.kind === 'envelope') return wrappedIn('object', inspection.envelope);
  // No key in the metadata: an instruction file holds it (in a listing, audited as an entry of its own), or nothing does.
  if (filesListed) {
    if (await exists(s3, bucket, instructionKey(entry.key))) return { kind: 'in-instruction-file', carrier: 'object' };
  } else {
    const file = await readSmallObject(s3, bucket, instructionKey(entry.key));
    if (file) return wrappedIn('instruction-file', parseInstructionFileKey(file.body));
  }
  return inspection.kind === 'needs-instruction-file'
    ? { kind: 'unreadable', carrier: 'object', reason: 'missing-instruction-file', message: 'V3 object whose instruction file is missing' }
    : { kind: 'not-encrypted', carrier: 'object' };
}

function wrappedIn(carrier: CarrierKind, wrapped: WrappedKey): Classified {
  return isKmsWrap(wrapped.wrapAlgorithm) ? { kind: 'wrapped', carrier, wrapped } : { kind: 'not-kms', carrier };
}

async function exists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  return (await headIfExists(s3, bucket, key)) !== undefined;
}

/** A wrapped key and its context, digested: the cache holds no ciphertext. */
function probeId(wrapped: WrappedKey): string {
  return wrapDigest(wrapped.encryptedDataKey, wrapped.encryptionContext);
}

/** Probes every wrapped key of a page the cache does not know yet: one ReEncrypt per distinct key. */
async function probe(kms: KmsBatcher, cache: ProbeCache, classified: readonly Classified[], probeKeyId: string): Promise<void> {
  const fresh = new Map<string, RewrapRequest>();
  for (const c of classified) {
    if (c.kind !== 'wrapped') continue;
    const id = probeId(c.wrapped);
    if (cache.has(id) || fresh.has(id)) continue;
    const context = c.wrapped.encryptionContext;
    // A key this process's own rotation wrapped: KMS named its key when it made it.
    const known = kms.knownKeyOf(c.wrapped.encryptedDataKey, context);
    if (known !== undefined) {
      cache.learn(id, { ok: true, keyId: known });
      continue;
    }
    fresh.set(id, { wrappedKey: c.wrapped.encryptedDataKey, sourceContext: context, destinationContext: context });
  }
  if (fresh.size === 0) return;
  const results = await kms.rewrapMany([...fresh.values()], probeKeyId);
  [...fresh.keys()].forEach((id, i) => {
    const r = results[i]!;
    // The ciphertext under the probe key is of no use and is dropped here.
    cache.set(id, r.ok ? { ok: true, keyId: r.sourceKeyId } : { ok: false, reason: r.error.reason, message: r.error.message });
  });
}

/** Probe results by wrapped-key digest, oldest forgotten first: data keys shared by writers recur close together. */
class ProbeCache {
  private readonly entries = new Map<string, ProbeResult>();
  sent = 0;

  constructor(private readonly capacity: number) {}

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get(id: string): ProbeResult | undefined {
    return this.entries.get(id);
  }

  /** A probe's answer. */
  set(id: string, result: ProbeResult): void {
    this.sent += 1;
    this.learn(id, result);
  }

  /** An answer known without a probe. */
  learn(id: string, result: ProbeResult): void {
    this.entries.set(id, result);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }
}

class Tally {
  private readonly scanned = { objects: 0, noncurrentVersions: 0, instructionFiles: 0 };
  private readonly underKey = { total: 0, noncurrent: 0, byFormat: {} as Record<string, number>, byKind: { object: 0, 'instruction-file': 0, 'orphan-instruction-file': 0 } };
  private readonly unreadable = { total: 0, byReason: {} as Record<string, number> };
  private otherKeys = 0;
  private readonly passedOver: Record<PassedOver, number> = { 'not-kms': 0, 'not-encrypted': 0, 'in-instruction-file': 0, gone: 0 };

  private readonly matches: (keyId: string) => boolean;

  constructor(private readonly options: ScopeScanOptions) {
    this.matches = options.matches ?? ((keyId) => keyId === options.keyArn);
  }

  /** Counts one entry; returns it as a finding when it is under the key or cannot be told. */
  count(entry: ScopedEntry, c: Classified, cache: ProbeCache): UsageFinding | undefined {
    if (c.carrier !== 'object') this.scanned.instructionFiles += 1;
    else if (entry.isLatest) this.scanned.objects += 1;
    else this.scanned.noncurrentVersions += 1;
    switch (c.kind) {
      case 'not-kms':
      case 'not-encrypted':
      case 'in-instruction-file':
      case 'gone':
        this.passedOver[c.kind] += 1;
        return undefined;
      case 'unreadable':
        return this.cannotTell(entry, c.carrier, undefined, c.reason, c.message);
      case 'wrapped': {
        const result = cache.get(probeId(c.wrapped))!;
        if (!result.ok) return this.cannotTell(entry, c.carrier, c.wrapped, result.reason, result.message);
        if (!this.matches(result.keyId)) {
          this.otherKeys += 1;
          return undefined;
        }
        this.underKey.total += 1;
        if (!entry.isLatest) this.underKey.noncurrent += 1;
        this.underKey.byFormat[c.wrapped.version] = (this.underKey.byFormat[c.wrapped.version] ?? 0) + 1;
        this.underKey.byKind[c.carrier] += 1;
        return finding(entry, c.carrier, c.wrapped, { status: 'under-key', keyId: result.keyId });
      }
    }
  }

  private cannotTell(entry: ScopedEntry, carrier: CarrierKind, wrapped: WrappedKey | undefined, reason: ReasonCode, message: string): UsageFinding {
    this.unreadable.total += 1;
    this.unreadable.byReason[reason] = (this.unreadable.byReason[reason] ?? 0) + 1;
    return finding(entry, carrier, wrapped, { status: 'unreadable', reason, message });
  }

  summary(kmsProbes: number): UsageSummary {
    return {
      bucket: '',
      prefix: '',
      keyArn: this.options.keyArn,
      includeVersions: this.options.includeVersions === true,
      scanned: this.scanned,
      underKey: this.underKey,
      otherKeys: this.otherKeys,
      notKms: this.passedOver['not-kms'],
      notEncrypted: this.passedOver['not-encrypted'],
      keyInInstructionFile: this.passedOver['in-instruction-file'],
      gone: this.passedOver.gone,
      unreadable: this.unreadable,
      kmsProbes,
    };
  }
}

function finding(
  entry: ScopedEntry,
  kind: CarrierKind,
  wrapped: WrappedKey | undefined,
  result: Pick<UsageFinding, 'status'> & Partial<Pick<UsageFinding, 'keyId' | 'reason' | 'message'>>,
): UsageFinding {
  return {
    status: result.status,
    bucket: entry.bucket,
    key: entry.key,
    versionId: entry.versionId,
    isLatest: entry.isLatest,
    kind,
    format: wrapped?.version,
    wrapAlgorithm: wrapped?.wrapAlgorithm,
    keyId: result.keyId,
    namedKeyId: wrapped?.wrapAlgorithm === 'kms' ? wrapped.encryptionContext.kms_cmk_id : undefined,
    reason: result.reason,
    message: result.message,
    lastModified: entry.lastModified?.toISOString(),
  };
}
