import { pipeline, Transform, type Readable } from 'node:stream';
import { GCM_MAX_PLAINTEXT_LENGTH, GCM_TAG_LENGTH } from '../crypto/cores.js';
import { CipherError, FormatError } from '../errors.js';
import { CBC, type Envelope } from '../formats/index.js';

/**
 * What the object's size alone proves, checked from HEAD before any KMS call, so that both modes
 * refuse the same objects and a rekey never streams gigabytes to learn it (docs/formats.md §1.4): a GCM
 * body is ciphertext‖tag, so never shorter than the tag, and one GCM key and IV cover at most
 * 2^36−32 bytes of plaintext, whatever the body or the recorded length claims.
 */
export function checkBodyLength(size: number, envelope: Envelope): void {
  const recorded = envelope.unencryptedContentLength;
  if (recorded !== undefined && recorded > GCM_MAX_PLAINTEXT_LENGTH) {
    throw new FormatError('too-large', `the recorded plaintext length ${recorded} exceeds the GCM limit of ${GCM_MAX_PLAINTEXT_LENGTH} bytes`);
  }
  // CBC content has no tag, and a CBC body too long for GCM is caught while a rekey streams it.
  if (envelope.contentCipher === CBC) return;
  if (size < GCM_TAG_LENGTH) {
    throw new FormatError('truncated', `the body is ${size} bytes, shorter than its ${GCM_TAG_LENGTH}-byte GCM tag`);
  }
  if (size - GCM_TAG_LENGTH > GCM_MAX_PLAINTEXT_LENGTH) {
    throw new FormatError('too-large', `the body is ${size} bytes, beyond the GCM limit of ${GCM_MAX_PLAINTEXT_LENGTH} bytes of plaintext`);
  }
}

/**
 * Passes the body on and fails it, before its end reaches the cipher, unless exactly `expected` bytes
 * (HEAD's Content-Length) came: a body that ends early on a block boundary passes CBC's padding check,
 * so the decrypted stream, and with it the upload, must not end on it.
 */
export function exactLength(body: Readable, expected: number, what: string): Readable {
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      /* Precondition: the body streamed is the body HEAD described, byte for byte in length. */
      if (seen === expected) done();
      else done(new CipherError('truncated', `${what} streamed ${seen} bytes, HEAD said ${expected}`));
    },
  });
  // pipeline destroys both on either's failure; the error reaches the reader through `counted`.
  return pipeline(body, counted, () => undefined);
}
