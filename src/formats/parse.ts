import { FormatError } from '../errors.js';
import { decodeBase64Field } from './base64.js';
import { parseContextJson } from './context-json.js';
import { assertNoV3ObjectKeys, assertSingleFormat, classifyMetadata, has } from './detect.js';
import { bindsContentCipher } from './encryption-context.js';
import { CBC, CEK_ALG_CONTEXT_KEY, GCM, KMS_WRAPS, RAW_WRAPS, V3_SUITE, V3_WRAP_CODES, isKmsWrap } from './envelope.js';
import type {
  EncryptionContext,
  Envelope,
  FormatVersion,
  KeyLocation,
  LegacyContentCipher,
  LegacyEnvelope,
  V3Envelope,
  WrapAlgorithm,
} from './envelope.js';
import { parseInstructionFile } from './instruction-file.js';
import { MetaKey, V3_OBJECT_KEYS } from './keys.js';
import { normaliseMetadata } from './metadata.js';
import type { NormalisedMetadata } from './metadata.js';
import { SUITES, tagLengthBits } from './suites.js';
import type { ContentSuite } from './suites.js';

export type RawMetadata = Readonly<Record<string, string | undefined>>;

/** What object metadata alone tells; I/O for an instruction file stays with the caller. */
export type Inspection =
  | { readonly kind: 'envelope'; readonly envelope: Envelope }
  /** V3 with its key in `<key>.instruction`; without that file the object cannot be read. */
  | { readonly kind: 'needs-instruction-file'; readonly version: 'v3' }
  /**
   * No S3EC key on the object. V1/V2 writers that use an instruction file leave none either, so a caller
   * that handles those probes `<key>.instruction` and passes it to {@link parseEnvelope}.
   */
  | { readonly kind: 'not-encrypted' };

/** Classifies an object from its metadata as HeadObject returns it (any key case, prefix or not). */
export function inspectMetadata(objectMetadata: RawMetadata): Inspection {
  const meta = normaliseMetadata(objectMetadata);
  switch (classifyMetadata(meta)) {
    case 'legacy':
      return { kind: 'envelope', envelope: parseLegacy(meta, 'object-metadata') };
    case 'v3':
      return { kind: 'envelope', envelope: parseV3(meta, 'object-metadata') };
    case 'v3-split':
      return { kind: 'needs-instruction-file', version: 'v3' };
    case 'none':
      return { kind: 'not-encrypted' };
  }
}

/**
 * Reads the envelope of an object from its metadata and, when it has one, its instruction file's body
 * (docs/formats.md §1.2). Object metadata wins over an instruction file for V1/V2 and V3 in-object layouts.
 */
export function parseEnvelope(objectMetadata: RawMetadata, instructionFile?: string | Uint8Array): Envelope {
  const meta = normaliseMetadata(objectMetadata);
  switch (classifyMetadata(meta)) {
    case 'legacy':
      return parseLegacy(meta, 'object-metadata');
    case 'v3':
      return parseV3(meta, 'object-metadata');
    case 'v3-split':
      return parseV3Split(meta, instructionFile);
    case 'none':
      return parseLegacyInstructionFile(instructionFile);
  }
}

/** What a KMS probe needs of an envelope: the wrapped data key, how it is wrapped, and its context. */
export interface WrappedKey {
  readonly version: FormatVersion;
  readonly wrapAlgorithm: WrapAlgorithm;
  readonly encryptedDataKey: Uint8Array;
  /** The KMS encryption context for KMS wraps; `{}` for raw wraps. */
  readonly encryptionContext: EncryptionContext;
}

/**
 * The wrapped data key an instruction file holds, from the file alone. A V3 file leaves c/d/i on its
 * object; they do not bear on which key wraps the data key, so an audit of old file versions, whose
 * object may have changed since, does not need them.
 */
export function parseInstructionFileKey(body: string | Uint8Array): WrappedKey {
  const file = parseInstructionFile(body);
  if (!has(file, MetaKey.v3Key)) return parseLegacyInstructionFile(body);
  assertNoV3ObjectKeys(file);
  assertSingleFormat(file, 'instruction file');
  const wrapCode = required(file, MetaKey.v3Wrap);
  const wrapAlgorithm = V3_WRAP_CODES[wrapCode];
  if (wrapAlgorithm === undefined) throw new FormatError('unsupported-algorithm', `unknown V3 wrap algorithm ${quote(wrapCode)}`);
  const context = parseContextJson(file[MetaKey.v3Context], MetaKey.v3Context);
  if (wrapAlgorithm === 'kms+context') checkCekAlgInContext(context, V3_SUITE, MetaKey.v3Context);
  return { version: 'v3', wrapAlgorithm, encryptedDataKey: decodeDataKey(required(file, MetaKey.v3Key)), encryptionContext: isKmsWrap(wrapAlgorithm) ? context : {} };
}

function parseV3Split(meta: NormalisedMetadata, instructionFile: string | Uint8Array | undefined): V3Envelope {
  /* Precondition: a V3 object whose key lives elsewhere comes with its instruction file. */
  if (instructionFile === undefined) {
    throw new FormatError('missing-instruction-file', 'V3 object keeps its data key in an instruction file');
  }
  const file = parseInstructionFile(instructionFile);
  assertNoV3ObjectKeys(file);
  const merged: NormalisedMetadata = {
    ...file,
    ...Object.fromEntries(V3_OBJECT_KEYS.map((k) => [k, meta[k] ?? ''])),
  };
  assertSingleFormat(merged, 'instruction file');
  /* Precondition: the instruction file holds the V3 data key. */
  if (!has(merged, MetaKey.v3Key)) throw new FormatError('bad-metadata', 'instruction file lacks x-amz-3');
  return parseV3(merged, 'instruction-file');
}

function parseLegacyInstructionFile(instructionFile: string | Uint8Array | undefined): LegacyEnvelope {
  if (instructionFile === undefined) {
    throw new FormatError('not-encrypted', 'object metadata has no S3 Encryption Client keys');
  }
  const file = parseInstructionFile(instructionFile);
  assertNoV3ObjectKeys(file);
  assertSingleFormat(file, 'instruction file');
  /* Precondition: an instruction file for an object without S3EC keys holds a complete V1/V2 envelope. */
  if (!(has(file, MetaKey.iv) && (has(file, MetaKey.keyV1) || has(file, MetaKey.keyV2)))) {
    throw new FormatError('unknown-format', 'instruction file holds no V1/V2 envelope');
  }
  return parseLegacy(file, 'instruction-file');
}

function parseLegacy(meta: NormalisedMetadata, location: KeyLocation): LegacyEnvelope {
  const version = has(meta, MetaKey.keyV2) ? 'v2' : 'v1';
  const encryptedDataKey = decodeDataKey(required(meta, version === 'v2' ? MetaKey.keyV2 : MetaKey.keyV1));
  const suite = legacySuite(meta[MetaKey.cekAlg]);
  const contentCipher = suite.cipher;
  const iv = decodeBase64Field(required(meta, suite.metadata.iv), suite.metadata.iv);
  /* Precondition: the IV has the suite's length (12 bytes GCM, 16 bytes CBC). */
  if (iv.length !== suite.ivLength) {
    throw new FormatError('bad-metadata', `${suite.metadata.iv} is ${iv.length} bytes, ${contentCipher} needs ${suite.ivLength}`);
  }
  checkTagLength(meta[MetaKey.tagLen], suite);
  const wrapAlgorithm = legacyWrap(meta[MetaKey.wrapAlg], version, encryptedDataKey.length);
  const context = parseContextJson(meta[MetaKey.matdesc], MetaKey.matdesc);
  if (wrapAlgorithm === 'kms+context') checkCekAlgInContext(context, contentCipher, MetaKey.matdesc);
  return {
    version,
    location,
    contentCipher,
    wrapAlgorithm,
    encryptedDataKey,
    iv,
    ...contexts(wrapAlgorithm, context, context),
    ...unencryptedLength(meta),
  };
}

function parseV3(meta: NormalisedMetadata, location: KeyLocation): V3Envelope {
  const cipher = required(meta, MetaKey.v3Cipher);
  /* Precondition: V3 has exactly one content cipher, the committing suite 115. */
  if (cipher !== V3_SUITE) throw new FormatError('unsupported-algorithm', `unknown V3 content cipher ${quote(cipher)}`);
  const { kdf, metadata } = SUITES[V3_SUITE];
  const wrapCode = required(meta, MetaKey.v3Wrap);
  const wrapAlgorithm = V3_WRAP_CODES[wrapCode];
  if (wrapAlgorithm === undefined) {
    throw new FormatError('unsupported-algorithm', `unknown V3 wrap algorithm ${quote(wrapCode)}`);
  }
  const encryptionContext = parseContextJson(meta[MetaKey.v3Context], MetaKey.v3Context);
  if (wrapAlgorithm === 'kms+context') checkCekAlgInContext(encryptionContext, V3_SUITE, MetaKey.v3Context);
  return {
    version: 'v3',
    location,
    contentCipher: V3_SUITE,
    wrapAlgorithm,
    encryptedDataKey: decodeDataKey(required(meta, MetaKey.v3Key)),
    messageId: fixedLength(meta, metadata.messageId, kdf.messageIdLength),
    keyCommitment: fixedLength(meta, metadata.commitment, kdf.commitmentLength),
    ...contexts(wrapAlgorithm, encryptionContext, parseContextJson(meta[MetaKey.v3MaterialDescription], MetaKey.v3MaterialDescription)),
    ...unencryptedLength(meta),
  };
}

function contexts(
  wrap: WrapAlgorithm,
  encryptionContext: EncryptionContext,
  materialDescription: EncryptionContext,
): { encryptionContext: EncryptionContext; materialDescription: EncryptionContext } {
  return isKmsWrap(wrap)
    ? { encryptionContext, materialDescription: {} }
    : { encryptionContext: {}, materialDescription };
}

function legacySuite(value: string | undefined): (typeof SUITES)[LegacyContentCipher] {
  // V1 writers never set x-amz-cek-alg; readers take its absence as CBC (docs/formats.md §1.3).
  if (value === undefined) return SUITES[CBC];
  if (value === GCM || value === CBC) return SUITES[value];
  throw new FormatError('unsupported-algorithm', `unknown content cipher ${quote(value)}`);
}

/** `x-amz-tag-len` is the tag in bits ("128"), or absent as Go v1 fixtures show, and absent for untagged CBC. */
function checkTagLength(value: string | undefined, suite: ContentSuite): void {
  if (value === undefined) return;
  if (suite.tagLength === 0) throw new FormatError('bad-metadata', `${MetaKey.tagLen} is set on ${suite.mode.toUpperCase()} content`);
  const bits = tagLengthBits(suite);
  if (value !== bits) {
    throw new FormatError('bad-metadata', `${MetaKey.tagLen} is ${quote(value)}, only ${bits} is valid`);
  }
}

function legacyWrap(value: string | undefined, version: 'v1' | 'v2', edkLength: number): WrapAlgorithm {
  if (value === undefined) {
    /* Precondition: only V1 leaves the wrap algorithm implicit. */
    if (version === 'v2') throw new FormatError('bad-metadata', `${MetaKey.wrapAlg} is missing`);
    // Java's rule for V1 EncryptionOnly objects: an EDK longer than 48 bytes is RSA-wrapped.
    return edkLength > 48 ? 'RSA' : 'AES';
  }
  if (KMS_WRAPS.has(value) || RAW_WRAPS.has(value)) return value as WrapAlgorithm;
  throw new FormatError('unsupported-algorithm', `unknown wrap algorithm ${quote(value)}`);
}

/**
 * A `kms+context` EC binds the content cipher under `aws:x-amz-cek-alg`; Go, Ruby and C++ readers refuse an
 * object where the two disagree, so rekey does too (docs/formats.md §1.5).
 */
function checkCekAlgInContext(context: EncryptionContext, cipher: string, field: string): void {
  if (!bindsContentCipher(context, cipher)) {
    throw new FormatError('bad-metadata', `${field} does not bind ${CEK_ALG_CONTEXT_KEY} to ${cipher}`);
  }
}

function unencryptedLength(meta: NormalisedMetadata): { unencryptedContentLength?: number } {
  const value = meta[MetaKey.unencryptedLength];
  if (value === undefined) return {};
  const length = Number(value);
  /* Precondition: the plaintext length is a plain non-negative decimal integer. */
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(length)) {
    throw new FormatError('bad-metadata', `${MetaKey.unencryptedLength} is not a byte count`);
  }
  return { unencryptedContentLength: length };
}

function decodeDataKey(value: string): Buffer {
  const edk = decodeBase64Field(value, 'encrypted data key');
  /* Precondition: there is a wrapped key to unwrap. */
  if (edk.length === 0) throw new FormatError('bad-metadata', 'encrypted data key is empty');
  return edk;
}

function fixedLength(meta: NormalisedMetadata, key: string, length: number): Buffer {
  const bytes = decodeBase64Field(required(meta, key), key);
  /* Precondition: message id and commitment are exactly 28 bytes. */
  if (bytes.length !== length) throw new FormatError('bad-metadata', `${key} is ${bytes.length} bytes, not ${length}`);
  return bytes;
}

function required(meta: NormalisedMetadata, key: string): string {
  const value = meta[key];
  if (value === undefined) throw new FormatError('bad-metadata', `${key} is missing`);
  return value;
}

/** Algorithm names are short public identifiers; a long value is cut so junk cannot flood a log line. */
function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}
