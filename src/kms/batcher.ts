import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { DecryptCommand, GenerateDataKeyCommand, ReEncryptCommand, type KMSClient } from '@aws-sdk/client-kms';
import pLimit, { type LimitFunction } from 'p-limit';
import type { ReasonCode } from '../errors.js';
import type { EncryptionContext } from '../formats/envelope.js';
import { classifyKmsError, KmsError, type KmsOperation } from './errors.js';
import type { RateLimiter } from './rate-limiter.js';
import { DEFAULT_RETRY, withRetry, type RetryOptions } from './retry.js';

export interface RewrapRequest {
  readonly wrappedKey: Uint8Array;
  readonly sourceContext: EncryptionContext;
  readonly destinationContext: EncryptionContext;
  /** The key the blob must be under; KMS (and, where KMS does not check, rekey) refuses any other. */
  readonly sourceKeyId?: string | undefined;
}

export type RewrapResult =
  | {
      readonly ok: true;
      readonly ciphertext: Uint8Array;
      /** ARN of the destination key, as KMS reports it. */
      readonly keyId: string;
      /** ARN of the key the blob was under, as KMS reports it. */
      readonly sourceKeyId: string;
    }
  | { readonly ok: false; readonly error: KmsError };

/**
 * A fresh data key as KMS GenerateDataKey returns it: plaintext and wrapped. The caller owns `plaintext`
 * and must zero it (`plaintext.fill(0)`) after use, or hand it to crypto's DataKey (`DataKey.adopt`).
 */
export interface GeneratedDataKey {
  readonly plaintext: Buffer;
  readonly wrappedKey: Uint8Array;
  readonly keyId: string;
}

/** An unwrapped data key. The caller owns `plaintext` and must zero it after use. */
export interface PlainDataKey {
  readonly plaintext: Buffer;
  readonly keyId: string;
}

export interface KmsCallEvent {
  readonly operation: KmsOperation;
  readonly result: 'ok' | ReasonCode;
  /** Time spent in the KMS call itself, without the wait for the rate limiter. */
  readonly seconds: number;
}

export interface KmsRetryEvent {
  readonly operation: KmsOperation;
  readonly reason: ReasonCode;
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  readonly delaySeconds: number;
}

export interface KmsBatchEvent {
  readonly requests: number;
  readonly distinct: number;
}

/** Metrics hooks; called synchronously on the hot path, so they must be cheap and must not throw. */
export interface KmsObserver {
  onCall?(event: KmsCallEvent): void;
  onRetry?(event: KmsRetryEvent): void;
  onBatch?(event: KmsBatchEvent): void;
}

export interface KmsBatcherOptions {
  readonly kms: KMSClient;
  /** Shared by every worker of the campaign; each attempt, retries included, takes one call from it. */
  readonly limiter: RateLimiter;
  /** KMS calls in flight at once from this process. Default 16. */
  readonly concurrency?: number;
  readonly retry?: Partial<RetryOptions>;
  readonly observer?: KmsObserver;
  /**
   * Distinct successful ReEncrypt results remembered across batches, least recently used forgotten
   * first. Default 10,000; 0 remembers none (requests in flight are still shared).
   */
  readonly rewrapCacheSize?: number;
  /** Wrapped keys KMS made in this process whose key is then known without asking (see `knownKeyOf`). */
  readonly knownWrapsSize?: number;
}

const AES_256_BYTES = 32;
const DEFAULT_REWRAP_CACHE_SIZE = 10_000;
/** About 10 MB: a digest and a shared ARN per entry. */
const DEFAULT_KNOWN_WRAPS_SIZE = 100_000;

/**
 * Every KMS call rekey makes goes through here: rewrap (ReEncrypt, deduplicated across the batches of
 * this batcher's lifetime, i.e. one campaign in one worker process) for the
 * `rewrap` mode, GenerateDataKey and Decrypt for the `rekey` mode. Each call is bounded by the
 * process-wide concurrency, paced by the campaign-wide rate limiter and retried with backoff when the
 * failure is transient.
 */
export class KmsBatcher {
  private readonly kms: KMSClient;
  private readonly limiter: RateLimiter;
  private readonly limit: LimitFunction;
  private readonly retry: RetryOptions;
  private readonly observer: KmsObserver;
  private readonly rewraps: RewrapCache;
  private readonly known: KnownWraps;

  constructor(options: KmsBatcherOptions) {
    this.kms = options.kms;
    this.limiter = options.limiter;
    this.limit = pLimit(options.concurrency ?? 16);
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.observer = options.observer ?? {};
    this.rewraps = new RewrapCache(options.rewrapCacheSize ?? DEFAULT_REWRAP_CACHE_SIZE);
    this.known = new KnownWraps(options.knownWrapsSize ?? DEFAULT_KNOWN_WRAPS_SIZE);
  }

  /**
   * The key a wrapped key is under, when this process got that very blob from KMS (GenerateDataKey or
   * ReEncrypt) with the same context: KMS said then which key made it, so asking again (a ReEncrypt probe)
   * would only repeat the answer. Undefined for any blob KMS did not hand to this process.
   */
  knownKeyOf(wrappedKey: Uint8Array, context: EncryptionContext): string | undefined {
    return this.known.get(wrapDigest(wrappedKey, context));
  }

  /**
   * Moves each wrapped key under `targetKeyId` with exactly one ReEncrypt per distinct request, so
   * objects sharing a cached data key cost one KMS call, also when they come in different or
   * concurrent batches (as long as the request is still in the cache). Never throws for a single request's failure:
   * each result says `ok` or carries its KmsError, in the order of `requests`.
   */
  async rewrapMany(requests: readonly RewrapRequest[], targetKeyId: string): Promise<RewrapResult[]> {
    /* Precondition: a destination key is named. */
    if (targetKeyId.length === 0) throw new RangeError('rewrapMany needs a target key id');
    const groups = groupDistinct(requests, targetKeyId);
    this.observer.onBatch?.({ requests: requests.length, distinct: groups.length });
    const results = new Array<RewrapResult>(requests.length);
    await Promise.all(
      groups.map(async ({ id, request, indexes }) => {
        const outcome = await this.rewraps.get(id, () => this.rewrapOne(request, targetKeyId));
        // Each object gets its own copy, so one caller editing its bytes cannot reach another object.
        for (const i of indexes) results[i] = outcome.ok ? { ...outcome, ciphertext: outcome.ciphertext.slice() } : outcome;
      }),
    );
    return results;
  }

  /** A fresh AES-256 data key under `keyId` bound to `context`, for the `rekey` mode. */
  async generateDataKey(keyId: string, context: EncryptionContext): Promise<GeneratedDataKey> {
    const out = await this.call('GenerateDataKey', () =>
      this.kms.send(
        new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: contextOrUndefined(context) }),
      ),
    );
    const plaintext = takePlaintext(out.Plaintext, 'GenerateDataKey');
    try {
      const generated = {
        plaintext,
        wrappedKey: required(out.CiphertextBlob, 'CiphertextBlob', 'GenerateDataKey'),
        keyId: required(out.KeyId, 'KeyId', 'GenerateDataKey'),
      };
      this.known.set(wrapDigest(generated.wrappedKey, context), generated.keyId);
      return generated;
    } catch (err) {
      plaintext.fill(0);
      throw err;
    }
  }

  /**
   * The plaintext of a wrapped data key, for the `rekey` mode, which must decrypt the old body.
   * With `keyId`, a blob under any other key is refused.
   */
  async decryptDataKey(wrappedKey: Uint8Array, context: EncryptionContext, keyId?: string): Promise<PlainDataKey> {
    const out = await this.call('Decrypt', () =>
      this.kms.send(
        new DecryptCommand({ CiphertextBlob: wrappedKey, EncryptionContext: contextOrUndefined(context), KeyId: keyId }),
      ),
    );
    const plaintext = takePlaintext(out.Plaintext, 'Decrypt');
    try {
      const actual = required(out.KeyId, 'KeyId', 'Decrypt');
      assertSameKey(keyId, actual, 'Decrypt');
      return { plaintext, keyId: actual };
    } catch (err) {
      plaintext.fill(0);
      throw err;
    }
  }

  private async rewrapOne(request: RewrapRequest, targetKeyId: string): Promise<RewrapResult> {
    try {
      const out = await this.call('ReEncrypt', () =>
        this.kms.send(
          new ReEncryptCommand({
            CiphertextBlob: request.wrappedKey,
            SourceEncryptionContext: contextOrUndefined(request.sourceContext),
            SourceKeyId: request.sourceKeyId,
            DestinationKeyId: targetKeyId,
            DestinationEncryptionContext: contextOrUndefined(request.destinationContext),
          }),
        ),
      );
      const sourceKeyId = required(out.SourceKeyId, 'SourceKeyId', 'ReEncrypt');
      assertSameKey(request.sourceKeyId, sourceKeyId, 'ReEncrypt');
      const ciphertext = required(out.CiphertextBlob, 'CiphertextBlob', 'ReEncrypt');
      const keyId = required(out.KeyId, 'KeyId', 'ReEncrypt');
      this.known.set(wrapDigest(ciphertext, request.destinationContext), keyId);
      return { ok: true, ciphertext, keyId, sourceKeyId };
    } catch (err) {
      // Anything but a KmsError is the rate limiter's Redis failing: not this object's fault, so the
      // whole batch fails and the job is retried rather than objects being reported as failed.
      if (!(err instanceof KmsError)) throw err;
      return { ok: false, error: err };
    }
  }

  /** One KMS operation: concurrency slot, then per attempt a rate-limit token, the call, the metrics. */
  private call<T>(operation: KmsOperation, send: () => Promise<T>): Promise<T> {
    return this.limit(() =>
      withRetry(
        async () => {
          await this.limiter.acquire();
          const started = performance.now();
          try {
            const out = await send();
            this.observeCall(operation, 'ok', started);
            return out;
          } catch (err) {
            const error = classifyKmsError(err, operation);
            this.observeCall(operation, error.reason, started);
            throw error;
          }
        },
        this.retry,
        ({ error, attempt, delayMs }) =>
          this.observer.onRetry?.({ operation, reason: error.reason, attempt, delaySeconds: delayMs / 1000 }),
      ),
    );
  }

  private observeCall(operation: KmsOperation, result: KmsCallEvent['result'], started: number): void {
    this.observer.onCall?.({ operation, result, seconds: (performance.now() - started) / 1000 });
  }
}

/**
 * ReEncrypt results by request digest. A request in flight is shared by every caller that asks
 * meanwhile (so objects of one data key rotated one by one still cost one call); a success is then
 * remembered, least recently used forgotten first; a failure is forgotten at once, so the next caller
 * asks KMS again. What is kept is a wrapped key and key ARNs: ReEncrypt never returns a plaintext key,
 * and Decrypt / GenerateDataKey results never come here.
 */
class RewrapCache {
  /** Bounded by the requests waiting in this process, not by `capacity`. */
  private readonly inFlight = new Map<string, Promise<RewrapResult>>();
  private readonly settled = new Map<string, RewrapResult>();

  constructor(private readonly capacity: number) {}

  get(id: string, rewrap: () => Promise<RewrapResult>): Promise<RewrapResult> {
    const known = this.settled.get(id);
    if (known) {
      this.settled.delete(id);
      this.settled.set(id, known);
      return Promise.resolve(known);
    }
    const waiting = this.inFlight.get(id);
    if (waiting) return waiting;
    const pending = rewrap();
    this.inFlight.set(id, pending);
    // Registered before any caller's continuation, so a success is remembered before anyone can miss it.
    pending.then(
      (result) => {
        this.inFlight.delete(id);
        this.remember(id, result);
      },
      () => this.inFlight.delete(id),
    );
    return pending;
  }

  private remember(id: string, result: RewrapResult): void {
    if (!result.ok || this.capacity <= 0) return;
    this.settled.set(id, result);
    if (this.settled.size > this.capacity) this.settled.delete(this.settled.keys().next().value!);
  }
}

/** Key ARNs by wrapped-key digest, oldest forgotten first; a digest, so no ciphertext is kept either. */
class KnownWraps {
  private readonly entries = new Map<string, string>();

  constructor(private readonly capacity: number) {}

  get(digest: string): string | undefined {
    return this.entries.get(digest);
  }

  set(digest: string, keyId: string): void {
    if (this.capacity <= 0) return;
    this.entries.set(digest, keyId);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }
}

/** A wrapped key and the context KMS bound it to: the pair a Decrypt or a probe must present. */
export function wrapDigest(wrappedKey: Uint8Array, context: EncryptionContext): string {
  return createHash('sha256').update(wrappedKey).update('\n').update(canonicalContext(context)).digest('base64');
}

interface DistinctGroup {
  /** Digest of the request and destination key; the cache keeps no copy of the wrapped key as its key. */
  readonly id: string;
  readonly request: RewrapRequest;
  readonly indexes: number[];
}

/**
 * Groups requests by (wrapped key bytes, source context, destination key, destination context) and,
 * beyond that, by the expected source key: two requests that expect different source keys must each
 * be checked.
 */
function groupDistinct(requests: readonly RewrapRequest[], targetKeyId: string): DistinctGroup[] {
  const groups = new Map<string, DistinctGroup>();
  requests.forEach((request, index) => {
    const id = createHash('sha256')
      .update(request.wrappedKey)
      .update(
        JSON.stringify([canonicalContext(request.sourceContext), targetKeyId, canonicalContext(request.destinationContext), request.sourceKeyId ?? '']),
      )
      .digest('base64');
    const group = groups.get(id);
    if (group) group.indexes.push(index);
    else groups.set(id, { id, request, indexes: [index] });
  });
  return [...groups.values()];
}

/** KMS compares contexts as maps, so key order must not make two requests distinct. */
export function canonicalContext(context: EncryptionContext): string {
  return JSON.stringify(
    Object.keys(context)
      .sort()
      .map((key) => [key, context[key]]),
  );
}

function contextOrUndefined(context: EncryptionContext): Record<string, string> | undefined {
  return Object.keys(context).length > 0 ? context : undefined;
}

function required<T>(value: T | undefined, field: string, operation: KmsOperation): T {
  /* Precondition: KMS answered with every field rekey relies on. */
  if (value === undefined) {
    throw new KmsError({
      reason: 'kms-error',
      operation,
      code: 'IncompleteResponse',
      retryable: true,
      message: `${operation}: the KMS response has no ${field}`,
    });
  }
  return value;
}

/**
 * Copies the SDK's plaintext into a buffer of our own (never from Node's shared pool) and zeroes the
 * SDK's copy, so the caller holds the only plaintext and can wipe it.
 */
function takePlaintext(sdkPlaintext: Uint8Array | undefined, operation: KmsOperation): Buffer {
  try {
    /* Precondition: KMS returned a 256-bit key. */
    if (sdkPlaintext?.length !== AES_256_BYTES) {
      throw new KmsError({
        reason: 'kms-error',
        operation,
        code: 'IncompleteResponse',
        retryable: true,
        message: `${operation}: KMS returned no 256-bit data key`,
      });
    }
    const own = Buffer.alloc(AES_256_BYTES);
    own.set(sdkPlaintext);
    return own;
  } finally {
    sdkPlaintext?.fill(0);
  }
}

/**
 * KMS refuses a blob under another key than SourceKeyId / KeyId with IncorrectKeyException; some
 * emulators (moto) ignore the parameter, so the key KMS reports is checked here too. An alias cannot
 * be resolved locally: for one, KMS' own check is the only one.
 */
function assertSameKey(expected: string | undefined, actualArn: string, operation: KmsOperation): void {
  if (expected === undefined || !provablyDifferentKey(expected, actualArn)) return;
  throw new KmsError({
    reason: 'wrong-key',
    operation,
    code: 'IncorrectKeyException',
    retryable: false,
    message: `${operation}: the wrapped key is under ${actualArn}, not the expected ${expected}`,
  });
}

function provablyDifferentKey(expected: string, actualArn: string): boolean {
  if (expected.startsWith('alias/') || expected.includes(':alias/')) return false;
  if (expected.startsWith('arn:')) return expected !== actualArn;
  return !actualArn.endsWith(`:key/${expected}`);
}
