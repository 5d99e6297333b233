import { FormatError } from '../errors.js';
import type { EncryptionContext } from './envelope.js';

/**
 * Parses a material description / encryption-context JSON value (`x-amz-matdesc`, `x-amz-t`, `x-amz-m`).
 * Absent or empty means `{}` (docs/formats.md §1.7: Go v4 writes the unused one as an empty string).
 */
export function parseContextJson(text: string | undefined, field: string): EncryptionContext {
  if (text === undefined || text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new FormatError('bad-metadata', `${field} is not JSON`, { cause });
  }
  /* Precondition: a KMS encryption context is a flat string-to-string map. */
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new FormatError('bad-metadata', `${field} is not a JSON object`);
  }
  const entries = Object.entries(parsed);
  for (const [key, value] of entries) {
    if (typeof value !== 'string') {
      throw new FormatError('bad-metadata', `${field} has a non-string value for ${JSON.stringify(key)}`);
    }
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * Compact JSON with every non-ASCII character escaped: S3 metadata values should be US-ASCII, and KMS
 * compares the parsed map, so `\u00c4` and `Ä` are the same context to every reader.
 */
export function stringifyContext(context: EncryptionContext): string {
  return JSON.stringify(context).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function contextsEqual(a: EncryptionContext, b: EncryptionContext): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}
