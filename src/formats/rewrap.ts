import { FormatError } from '../errors.js';
import { bindsContentCipher, requireKmsWrap } from './encryption-context.js';
import { CEK_ALG_CONTEXT_KEY, KMS_CMK_ID_CONTEXT_KEY } from './envelope.js';
import type { EncryptionContext, Envelope } from './envelope.js';

export interface RewrappedKey {
  /** The new KMS CiphertextBlob. */
  readonly encryptedDataKey: Uint8Array;
  /** The context the new blob is bound to (`RewrapContexts.destination`). */
  readonly encryptionContext: EncryptionContext;
}

/**
 * The same envelope with its wrapped key and encryption context replaced: format version, location,
 * content cipher, IV or message id and commitment are untouched, so the body stays valid.
 */
export function withRewrappedKey(envelope: Envelope, key: RewrappedKey): Envelope {
  requireKmsWrap(envelope);
  /* Precondition: there is a wrapped key to store. */
  if (key.encryptedDataKey.byteLength === 0) throw new FormatError('bad-metadata', 'rewrapped data key is empty');
  /* Precondition: a kms+context EC keeps binding the content cipher, or readers refuse the object. */
  if (envelope.wrapAlgorithm === 'kms+context' && !bindsContentCipher(key.encryptionContext, envelope.contentCipher)) {
    throw new FormatError('bad-metadata', `rewrapped context does not bind ${CEK_ALG_CONTEXT_KEY} to ${envelope.contentCipher}`);
  }
  /* Precondition: a legacy kms EC names the key that now wraps the data key. */
  if (envelope.wrapAlgorithm === 'kms' && !key.encryptionContext[KMS_CMK_ID_CONTEXT_KEY]) {
    throw new FormatError('bad-metadata', `rewrapped context of a kms wrap lacks ${KMS_CMK_ID_CONTEXT_KEY}`);
  }
  return { ...envelope, encryptedDataKey: key.encryptedDataKey, encryptionContext: key.encryptionContext };
}
