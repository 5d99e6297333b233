import { hkdfSync, timingSafeEqual } from 'node:crypto';
import { CipherError } from '../errors.js';
import { V3_SUITE } from '../formats/envelope.js';
import { SUITES, kdfInfo } from '../formats/suites.js';

/** Suite 0x0073: its id prefixes the HKDF info and forms the content AAD (docs/formats.md §1.7). */
const SUITE = SUITES[V3_SUITE];
const DERIVE_KEY_INFO = kdfInfo(SUITE, SUITE.kdf.contentKeyLabel);
const COMMIT_KEY_INFO = kdfInfo(SUITE, SUITE.kdf.commitmentLabel);

/** V3 content is AES-256-GCM with a fixed IV of twelve 0x01 bytes: each derived key is used once. */
export const V3_CONTENT_IV = SUITE.fixedIv;
export const V3_CONTENT_AAD = SUITE.aad;

/** HKDF-SHA512(salt = message id, ikm = data key, info = 0x0073 ‖ "COMMITKEY") → 28 bytes. */
export function deriveV3Commitment(dataKey: Uint8Array, messageId: Uint8Array): Buffer {
  return Buffer.from(hkdfSync(SUITE.kdf.hash, dataKey, messageId, COMMIT_KEY_INFO, SUITE.kdf.commitmentLength));
}

/** HKDF-SHA512(salt = message id, ikm = data key, info = 0x0073 ‖ "DERIVEKEY") → the 32-byte content key. */
export function deriveV3ContentKey(dataKey: Uint8Array, messageId: Uint8Array): Buffer {
  return Buffer.from(hkdfSync(SUITE.kdf.hash, dataKey, messageId, DERIVE_KEY_INFO, SUITE.kdf.contentKeyLength));
}

/**
 * Derives the content key only after the stored commitment matched in constant time, so a wrong key or a
 * swapped message id never yields a single byte of plaintext.
 */
export function deriveCommittedV3ContentKey(dataKey: Uint8Array, messageId: Uint8Array, commitment: Uint8Array): Buffer {
  const expected = deriveV3Commitment(dataKey, messageId);
  const matches = expected.length === commitment.byteLength && timingSafeEqual(expected, commitment);
  expected.fill(0);
  /* Precondition: the data key commits to this object's commitment before any content is decrypted. */
  if (!matches) throw new CipherError('commitment-mismatch', 'V3 key commitment does not match the data key');
  return deriveV3ContentKey(dataKey, messageId);
}
