import { FormatError } from '../errors.js';

/** S3 user metadata with lowercase keys, no `x-amz-meta-` prefix and non-ASCII values decoded. */
export type NormalisedMetadata = Readonly<Record<string, string>>;

const USER_METADATA_PREFIX = 'x-amz-meta-';
const ENCODED_WORD = /^=\?utf-8\?b\?([A-Za-z0-9+/]*={0,2})\?=$/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Normalises metadata as S3 (HeadObject) or a writer (mixed-case headers, with or without the
 * `x-amz-meta-` prefix) hands it over, so lookups by the lowercase S3EC key names work. Idempotent.
 */
export function normaliseMetadata(raw: Readonly<Record<string, string | undefined>>): NormalisedMetadata {
  const out = new Map<string, string>();
  for (const [rawKey, rawValue] of Object.entries(raw)) {
    if (rawValue === undefined) continue;
    const lower = rawKey.toLowerCase();
    const key = lower.startsWith(USER_METADATA_PREFIX) ? lower.slice(USER_METADATA_PREFIX.length) : lower;
    const value = decodeS3MetadataValue(rawValue, key);
    const previous = out.get(key);
    /* Precondition: two spellings of one key never disagree, or which one a reader sees would be arbitrary. */
    if (previous !== undefined && previous !== value) {
      throw new FormatError('bad-metadata', `metadata key ${key} appears twice with different values`);
    }
    out.set(key, value);
  }
  return Object.fromEntries(out);
}

/**
 * Undoes S3's encoding of non-ASCII metadata values: an RFC 2047 `=?UTF-8?B?…?=` word (several words are
 * separated by white space) whose text is itself the UTF-8 bytes read as Latin-1 (docs/formats.md §1.9).
 */
export function decodeS3MetadataValue(value: string, key = 'value'): string {
  const words = value.trim().split(/\s+/);
  const payloads: string[] = [];
  for (const word of words) {
    const match = ENCODED_WORD.exec(word);
    if (match === null) return value;
    payloads.push(match[1] ?? '');
  }
  const once = tryDecodeUtf8(Buffer.concat(payloads.map((p) => Buffer.from(p, 'base64'))));
  /* Precondition: an encoded word carries UTF-8, or the value cannot be rebuilt for KMS. */
  if (once === undefined) {
    throw new FormatError('bad-metadata', `metadata ${key} is an RFC 2047 word that is not UTF-8`);
  }
  // Only text whose every code point fits in a byte can be the double-encoded form; a writer that
  // encoded once leaves text that is not valid UTF-8 when read back as Latin-1.
  if (!/^[\u0000-\u00ff]*$/.test(once)) return once;
  return tryDecodeUtf8(Buffer.from(once, 'latin1')) ?? once;
}

function tryDecodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * The inverse of {@link decodeS3MetadataValue}: an ASCII value goes as it is; a non-ASCII one is sent in
 * the double-encoded form S3 itself returns, so that it can travel in an HTTP header and every reader
 * that decodes S3's encoding gets the original text back.
 */
export function encodeS3MetadataValue(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  const latin1 = Buffer.from(value, 'utf8').toString('latin1');
  return `=?UTF-8?B?${Buffer.from(latin1, 'utf8').toString('base64')}?=`;
}
