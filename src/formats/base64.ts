import { FormatError } from '../errors.js';

const STANDARD = /^[A-Za-z0-9+/]*$/;
const URL_SAFE = /^[A-Za-z0-9_-]*$/;

/**
 * Decodes a base64 metadata value in the standard or the URL-safe alphabet (Go v1 wrote URL-safe IVs,
 * docs/formats.md §1.9). Padding may be absent but never wrong. The value itself never enters the error,
 * since an EDK has no business in logs.
 */
export function decodeBase64Field(value: string, field: string): Buffer {
  const body = value.replace(/={1,2}$/, '');
  const padding = value.length - body.length;
  const standard = STANDARD.test(body);
  /* Precondition: one alphabet only, no stray characters, and a length some byte string encodes to. */
  if ((!standard && !URL_SAFE.test(body)) || body.length % 4 === 1 || (padding > 0 && value.length % 4 !== 0)) {
    throw new FormatError('bad-metadata', `${field} is not valid base64`);
  }
  return ownCopy(Buffer.from(body, standard ? 'base64' : 'base64url'));
}

/**
 * A short `Buffer.from` result is a view into Node's shared 8 KiB pool. Such a view, posted to a cipher
 * thread or kept in a long-lived envelope, carries the whole slab and whatever else lives in it, so
 * decoded fields get memory of their own (`Buffer.alloc` never draws from the pool).
 */
function ownCopy(view: Buffer): Buffer {
  const own = Buffer.alloc(view.length);
  view.copy(own);
  return own;
}

/** Standard base64 with padding, as every S3EC writer emits it. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
