import { FormatError } from '../errors.js';
import { CEK_ALG_CONTEXT_KEY, KMS_CMK_ID_CONTEXT_KEY, RESERVED_CONTEXT_KEYS, isKmsWrap } from './envelope.js';
import type { EncryptionContext, Envelope, KmsWrapAlgorithm } from './envelope.js';
import { NEW_CONTENT_SUITE } from './suites.js';

export type KmsEnvelope = Envelope & { readonly wrapAlgorithm: KmsWrapAlgorithm };

/** Rekey rotates KMS-wrapped keys only; raw AES/RSA wraps are reported, not guessed at. */
export function requireKmsWrap(envelope: Envelope): asserts envelope is KmsEnvelope {
  if (!isKmsWrap(envelope.wrapAlgorithm)) {
    throw new FormatError('unsupported-algorithm', `data key is wrapped with ${envelope.wrapAlgorithm}, not KMS`);
  }
}

/**
 * The exact encryption context KMS bound the data key to: for `kms+context` the whole stored map
 * including `aws:x-amz-cek-alg`; for legacy `kms` the whole matdesc including `kms_cmk_id` (docs/formats.md §1.5).
 */
export function kmsEncryptionContext(envelope: Envelope): EncryptionContext {
  requireKmsWrap(envelope);
  return envelope.encryptionContext;
}

/** The caller's part of the context: the stored EC without the keys the S3EC adds itself. */
export function userEncryptionContext(envelope: Envelope): EncryptionContext {
  return Object.fromEntries(
    Object.entries(kmsEncryptionContext(envelope)).filter(([k]) => !RESERVED_CONTEXT_KEYS.includes(k)),
  );
}

/**
 * The EC for `GenerateDataKey` of a fresh `kms+context` envelope: the caller's context plus
 * `aws:x-amz-cek-alg` = `AES/GCM/NoPadding` (V2) or `115` (V3), as every S3EC writer builds it.
 */
export function encryptionContextForNewEnvelope(version: 'v2' | 'v3', userContext: EncryptionContext): EncryptionContext {
  const reserved = Object.keys(userContext).filter((k) => RESERVED_CONTEXT_KEYS.includes(k));
  /* Precondition: the caller's context leaves the S3EC's reserved keys alone. */
  if (reserved.length > 0) {
    throw new FormatError('bad-metadata', `encryption context sets reserved keys (${reserved.join(', ')})`);
  }
  return { ...userContext, [CEK_ALG_CONTEXT_KEY]: NEW_CONTENT_SUITE[version].cipher };
}

export interface RewrapContexts {
  /** `SourceEncryptionContext` for KMS ReEncrypt. */
  readonly source: EncryptionContext;
  /** `DestinationEncryptionContext` for KMS ReEncrypt, and the context to store with the new key. */
  readonly destination: EncryptionContext;
}

/**
 * Contexts for moving a data key to `destinationKeyId` with ReEncrypt. `kms+context` keeps its context;
 * legacy `kms` names its key inside the context, so `kms_cmk_id` moves with it (docs/formats.md §1.11).
 */
export function rewrapEncryptionContexts(envelope: Envelope, destinationKeyId: string): RewrapContexts {
  const source = kmsEncryptionContext(envelope);
  /* Precondition: there is a key id to record. */
  if (destinationKeyId === '') throw new FormatError('bad-metadata', 'destination key id is empty');
  if (envelope.wrapAlgorithm === 'kms+context') return { source, destination: source };
  return { source, destination: { ...source, [KMS_CMK_ID_CONTEXT_KEY]: destinationKeyId } };
}

export function bindsContentCipher(context: EncryptionContext, cipher: string): boolean {
  return context[CEK_ALG_CONTEXT_KEY] === cipher;
}
