import { randomBytes } from 'node:crypto';
import { FormatError } from '../errors.js';
import { bindsContentCipher } from '../formats/encryption-context.js';
import { CEK_ALG_CONTEXT_KEY } from '../formats/envelope.js';
import type { EncryptionContext, Envelope, KeyLocation, LegacyEnvelope, V3Envelope } from '../formats/envelope.js';
import { NEW_CONTENT_SUITE } from '../formats/suites.js';
import type { DataKey } from './data-key.js';
import { deriveV3Commitment } from './v3-kdf.js';

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
  const suite = NEW_CONTENT_SUITE[options.version];
  /* Precondition: the stored context binds the content cipher, as readers check (docs/formats.md §1.5). */
  if (!bindsContentCipher(options.encryptionContext, suite.cipher)) {
    throw new FormatError('bad-metadata', `encryption context does not bind ${CEK_ALG_CONTEXT_KEY} to ${suite.cipher}`);
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
    const { cipher, ivLength } = NEW_CONTENT_SUITE.v2;
    return { ...common, version: 'v2', contentCipher: cipher, iv: nonZeroRandom(ivLength) } satisfies LegacyEnvelope;
  }
  const { cipher, kdf } = NEW_CONTENT_SUITE.v3;
  const messageId = nonZeroRandom(kdf.messageIdLength);
  const keyCommitment = options.dataKey.use((key) => deriveV3Commitment(key, messageId));
  return { ...common, version: 'v3', contentCipher: cipher, messageId, keyCommitment } satisfies V3Envelope;
}

/** Java refuses an all-zero IV as uninitialised; redrawing costs nothing and keeps every reader happy. */
function nonZeroRandom(length: number): Buffer {
  for (;;) {
    const bytes = randomBytes(length);
    if (bytes.some((b) => b !== 0)) return bytes;
  }
}
