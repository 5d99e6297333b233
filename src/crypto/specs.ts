import { CipherError } from '../errors.js';
import { CBC, GCM, V3_SUITE } from '../formats/envelope.js';
import type { Envelope } from '../formats/envelope.js';
import { SUITES } from '../formats/suites.js';
import { CbcDecryptCore, GcmDecryptCore, GcmEncryptCore } from './cores.js';
import type { CipherCore, CoreOptions } from './cores.js';
import type { DataKey } from './data-key.js';
import { V3_CONTENT_AAD, V3_CONTENT_IV, deriveCommittedV3ContentKey, deriveV3ContentKey } from './v3-kdf.js';

/**
 * What a content cipher needs, generic in how the key travels: a `DataKey` in the public API, an
 * ArrayBuffer in a thread message, bytes when the cipher is created.
 */
export type DecryptParams<K> =
  | { readonly cipher: typeof GCM; readonly key: K; readonly iv: Uint8Array; readonly expectedLength?: number }
  | { readonly cipher: typeof CBC; readonly key: K; readonly iv: Uint8Array; readonly expectedLength?: number }
  | {
      readonly cipher: typeof V3_SUITE;
      readonly key: K;
      readonly messageId: Uint8Array;
      readonly commitment: Uint8Array;
      readonly expectedLength?: number;
    };

export type EncryptParams<K> =
  | { readonly cipher: typeof GCM; readonly key: K; readonly iv: Uint8Array }
  | { readonly cipher: typeof V3_SUITE; readonly key: K; readonly messageId: Uint8Array };

export type DecryptSpec = DecryptParams<DataKey>;
export type EncryptSpec = EncryptParams<DataKey>;

/** The decryption an object's envelope calls for, under its unwrapped data key (consumed by the cipher). */
export function decryptSpecFor(envelope: Envelope, key: DataKey): DecryptSpec {
  const expected = envelope.unencryptedContentLength === undefined ? {} : { expectedLength: envelope.unencryptedContentLength };
  if (envelope.version === 'v3') {
    return { cipher: V3_SUITE, key, messageId: envelope.messageId, commitment: envelope.keyCommitment, ...expected };
  }
  return { cipher: envelope.contentCipher, key, iv: envelope.iv, ...expected };
}

/** The encryption a freshly built envelope calls for (V2 AES/GCM or V3). */
export function encryptSpecFor(envelope: Envelope, key: DataKey): EncryptSpec {
  if (envelope.version === 'v3') return { cipher: V3_SUITE, key, messageId: envelope.messageId };
  /* Precondition: new content is always authenticated; CBC is read-only. */
  if (!SUITES[envelope.contentCipher].writable) throw new CipherError('internal', `${envelope.contentCipher} content is never written`);
  return { cipher: GCM, key, iv: envelope.iv };
}

export function mapKey<K, L>(params: DecryptParams<K>, key: L): DecryptParams<L>;
export function mapKey<K, L>(params: EncryptParams<K>, key: L): EncryptParams<L>;
export function mapKey<K, L>(params: DecryptParams<K> | EncryptParams<K>, key: L): DecryptParams<L> | EncryptParams<L> {
  return { ...params, key } as DecryptParams<L> | EncryptParams<L>;
}

/**
 * The params as posted to a cipher thread: each byte field (IV, message id, commitment) copied into an
 * ArrayBuffer of exactly its length. postMessage clones a view's whole ArrayBuffer, and a view into
 * Node's shared pool would take the slab around it, and any secret in it, to the thread.
 */
export function withOwnBytes<P extends DecryptParams<ArrayBuffer> | EncryptParams<ArrayBuffer>>(params: P): P {
  const copies = Object.entries(params)
    .filter(([field, value]) => field !== 'key' && ArrayBuffer.isView(value))
    .map(([field, value]) => [field, new Uint8Array(value as Uint8Array)]);
  return { ...params, ...Object.fromEntries(copies) };
}

export type Limits = Pick<CoreOptions, 'maxPlaintextLength'>;

/**
 * Creates the decrypting core and zeroes `params.key` (and any derived key) as soon as the cipher holds
 * its own key schedule. For V3 the commitment is checked first, before any plaintext can exist.
 */
export function openDecryptCore(params: DecryptParams<Uint8Array>, limits: Limits = {}): CipherCore {
  const options = { ...limits, ...(params.expectedLength === undefined ? {} : { expectedLength: params.expectedLength }) };
  try {
    switch (params.cipher) {
      case GCM:
        return new GcmDecryptCore(params.key, params.iv, options);
      case CBC:
        return new CbcDecryptCore(params.key, params.iv, options);
      case V3_SUITE: {
        const contentKey = deriveCommittedV3ContentKey(params.key, params.messageId, params.commitment);
        try {
          return new GcmDecryptCore(contentKey, V3_CONTENT_IV, { ...options, aad: V3_CONTENT_AAD });
        } finally {
          contentKey.fill(0);
        }
      }
    }
  } finally {
    params.key.fill(0);
  }
}

/** Creates the encrypting core and zeroes `params.key` (and the V3 derived key) right away. */
export function openEncryptCore(params: EncryptParams<Uint8Array>, limits: Limits = {}): CipherCore {
  try {
    if (params.cipher === GCM) return new GcmEncryptCore(params.key, params.iv, limits);
    const contentKey = deriveV3ContentKey(params.key, params.messageId);
    try {
      return new GcmEncryptCore(contentKey, V3_CONTENT_IV, { ...limits, aad: V3_CONTENT_AAD });
    } finally {
      contentKey.fill(0);
    }
  } finally {
    params.key.fill(0);
  }
}
