import { randomBytes } from 'node:crypto';
import type { DataKey } from '../crypto/data-key.js';
import { deriveV3Commitment } from '../crypto/v3-kdf.js';
import { FormatError } from '../errors.js';
import { bindsContentCipher } from './encryption-context.js';
import { CEK_ALG_CONTEXT_KEY, GCM, GCM_IV_LENGTH, V3_MESSAGE_ID_LENGTH, V3_SUITE } from './envelope.js';
import type { EncryptionContext, Envelope, KeyLocation, LegacyEnvelope, V3Envelope } from './envelope.js';

export interface NewEnvelopeOptions {
  readonly version: 'v2' | 'v3';
  /** KMS `GenerateDataKey` CiphertextBlob. */
  readonly encryptedDataKey: Uint8Array;
  /** The context `GenerateDataKey` was called with (see `encryptionContextForNewEnvelope`). */
  readonly encryptionContext: EncryptionContext;
  /** The plaintext key from the same call; read (not consumed) to compute the V3 commitment. */
  readonly dataKey: DataKey;
  /** Default: object metadata. */
  readonly location?: KeyLocation;
  readonly unencryptedContentLength?: number;
}

/**
 * A fresh `kms+context` envelope for new content: V2 AES/GCM with a random 12-byte IV, or V3 with a random
 * 28-byte message id and its key commitment. The content must then be encrypted with the same data key.
 */
export function buildEnvelope(options: NewEnvelopeOptions): Envelope {
  const cipher = options.version === 'v2' ? GCM : V3_SUITE;
  /* Precondition: the stored context binds the content cipher, as readers check (formats.md §1.5). */
  if (!bindsContentCipher(options.encryptionContext, cipher)) {
    throw new FormatError('bad-metadata', `encryption context does not bind ${CEK_ALG_CONTEXT_KEY} to ${cipher}`);
  }
  /* Precondition: there is a wrapped key to store. */
  if (options.encryptedDataKey.byteLength === 0) throw new FormatError('bad-metadata', 'encrypted data key is empty');
  const common = {
    location: options.location ?? 'object-metadata',
    wrapAlgorithm: 'kms+context',
    encryptedDataKey: options.encryptedDataKey,
    encryptionContext: options.encryptionContext,
    materialDescription: {},
    ...(options.unencryptedContentLength === undefined ? {} : { unencryptedContentLength: options.unencryptedContentLength }),
  } as const;
  if (options.version === 'v2') {
    return { ...common, version: 'v2', contentCipher: GCM, iv: nonZeroRandom(GCM_IV_LENGTH) } satisfies LegacyEnvelope;
  }
  const messageId = nonZeroRandom(V3_MESSAGE_ID_LENGTH);
  const keyCommitment = options.dataKey.use((key) => deriveV3Commitment(key, messageId));
  return { ...common, version: 'v3', contentCipher: V3_SUITE, messageId, keyCommitment } satisfies V3Envelope;
}

/** Java refuses an all-zero IV as uninitialised; redrawing costs nothing and keeps every reader happy. */
function nonZeroRandom(length: number): Buffer {
  for (;;) {
    const bytes = randomBytes(length);
    if (bytes.some((b) => b !== 0)) return bytes;
  }
}
