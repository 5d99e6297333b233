import { FormatError } from '../errors.js';
import { encodeBase64 } from './base64.js';
import { stringifyContext } from './context-json.js';
import { V3_WRAP_CODES, isKmsWrap } from './envelope.js';
import type { Envelope, LegacyEnvelope, V3Envelope } from './envelope.js';
import { stringifyInstructionFile } from './instruction-file.js';
import { MetaKey, V3_OBJECT_KEYS } from './keys.js';
import { SUITES, tagLengthBits } from './suites.js';

export interface SerialisedEnvelope {
  /**
   * S3EC keys for the object's user metadata, without the `x-amz-meta-` prefix. They replace every key in
   * `S3EC_METADATA_KEYS`; the object's other user metadata stays as it was.
   */
  readonly objectMetadata: Readonly<Record<string, string>>;
  /** The body of `<key>.instruction`, when the envelope lives there. */
  readonly instructionFile?: string;
}

const V3_WRAP_CODE_OF = new Map(Object.entries(V3_WRAP_CODES).map(([code, wrap]) => [wrap, code]));

/**
 * Writes an envelope back as S3EC content metadata: all of it in object metadata, or in an instruction
 * file (V2: everything; V3: all but c/d/i, which stay on the object, docs/formats.md §1.8).
 */
export function serialiseEnvelope(envelope: Envelope): SerialisedEnvelope {
  const map = envelope.version === 'v3' ? v3Map(envelope) : v2Map(envelope);
  if (envelope.location === 'object-metadata') return { objectMetadata: map };
  const objectKeys: readonly string[] = envelope.version === 'v3' ? V3_OBJECT_KEYS : [];
  const entries = Object.entries(map);
  return {
    objectMetadata: Object.fromEntries(entries.filter(([k]) => objectKeys.includes(k))),
    instructionFile: stringifyInstructionFile(Object.fromEntries(entries.filter(([k]) => !objectKeys.includes(k)))),
  };
}

function v2Map(envelope: LegacyEnvelope): Record<string, string> {
  /* Precondition: V1 is read-only; a rekey of a V1 object writes V2 or V3. */
  if (envelope.version === 'v1') throw new FormatError('unsupported-algorithm', 'V1 envelopes are not written');
  const context = isKmsWrap(envelope.wrapAlgorithm) ? envelope.encryptionContext : envelope.materialDescription;
  const suite = SUITES[envelope.contentCipher];
  return {
    [MetaKey.keyV2]: encodeBase64(envelope.encryptedDataKey),
    [suite.metadata.iv]: encodeBase64(envelope.iv),
    [suite.metadata.cipher]: envelope.contentCipher,
    [MetaKey.wrapAlg]: envelope.wrapAlgorithm,
    [MetaKey.matdesc]: stringifyContext(context),
    ...(suite.tagLength > 0 ? { [MetaKey.tagLen]: tagLengthBits(suite) } : {}),
    ...lengthEntry(envelope),
  };
}

function v3Map(envelope: V3Envelope): Record<string, string> {
  const wrapCode = V3_WRAP_CODE_OF.get(envelope.wrapAlgorithm);
  /* Precondition: V3 carries only the wraps it has codes for. */
  if (wrapCode === undefined) {
    throw new FormatError('unsupported-algorithm', `V3 has no code for wrap ${envelope.wrapAlgorithm}`);
  }
  const kms = isKmsWrap(envelope.wrapAlgorithm);
  const { metadata } = SUITES[envelope.contentCipher];
  return {
    [MetaKey.v3Key]: encodeBase64(envelope.encryptedDataKey),
    [metadata.cipher]: envelope.contentCipher,
    [MetaKey.v3Wrap]: wrapCode,
    [metadata.messageId]: encodeBase64(envelope.messageId),
    [metadata.commitment]: encodeBase64(envelope.keyCommitment),
    ...(kms
      ? { [MetaKey.v3Context]: stringifyContext(envelope.encryptionContext) }
      : { [MetaKey.v3MaterialDescription]: stringifyContext(envelope.materialDescription) }),
    ...lengthEntry(envelope),
  };
}

function lengthEntry(envelope: Envelope): Record<string, string> {
  const length = envelope.unencryptedContentLength;
  return length === undefined ? {} : { [MetaKey.unencryptedLength]: String(length) };
}
