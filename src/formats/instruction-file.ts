import { FormatError } from '../errors.js';

/** Instruction files are a few hundred bytes; anything far larger is not one. */
export const MAX_INSTRUCTION_FILE_BYTES = 64 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses an instruction-file body into the same key/value map as object metadata. Values may be JSON
 * strings, numbers or null (docs/formats.md §1.8: Go writes `x-amz-tag-len` as a number); null means absent.
 */
export function parseInstructionFile(body: string | Uint8Array): Readonly<Record<string, string>> {
  /* Precondition: the body is small enough to be an instruction file at all. */
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  if (size > MAX_INSTRUCTION_FILE_BYTES) {
    throw new FormatError('bad-metadata', `instruction file is ${size} bytes, more than ${MAX_INSTRUCTION_FILE_BYTES}`);
  }
  const parsed = parseJson(typeof body === 'string' ? body : decodeUtf8(body));
  /* Precondition: the body is one JSON object. */
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new FormatError('bad-metadata', 'instruction file is not a JSON object');
  }
  const out = new Map<string, string>();
  for (const [rawKey, value] of Object.entries(parsed)) {
    const key = rawKey.toLowerCase();
    if (value === null) continue;
    if (typeof value === 'string') out.set(key, value);
    else if (typeof value === 'number' && Number.isFinite(value)) out.set(key, String(value));
    else throw new FormatError('bad-metadata', `instruction file value of ${JSON.stringify(key)} is not a string or number`);
  }
  return Object.fromEntries(out);
}

/** The JSON body of an instruction file: a flat object of string values. */
export function stringifyInstructionFile(map: Readonly<Record<string, string>>): string {
  return JSON.stringify(map);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new FormatError('bad-metadata', 'instruction file is not JSON', { cause });
  }
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch (cause) {
    throw new FormatError('bad-metadata', 'instruction file is not UTF-8', { cause });
  }
}
