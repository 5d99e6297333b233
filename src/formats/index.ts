export { decodeBase64Field, encodeBase64 } from './base64.js';
export { contextsEqual, parseContextJson, stringifyContext } from './context-json.js';
export { classifyMetadata, isInstructionFileObject } from './detect.js';
export type { MetadataLayout } from './detect.js';
export {
  encryptionContextForNewEnvelope,
  kmsEncryptionContext,
  requireKmsWrap,
  rewrapEncryptionContexts,
  userEncryptionContext,
} from './encryption-context.js';
export type { KmsEnvelope, RewrapContexts } from './encryption-context.js';
export * from './envelope.js';
export { MAX_INSTRUCTION_FILE_BYTES, parseInstructionFile } from './instruction-file.js';
export {
  DEFAULT_INSTRUCTION_FILE_SUFFIX,
  INSTRUCTION_FILE_MARKER,
  MetaKey,
  S3EC_METADATA_KEYS,
  isS3ecMetadataKey,
} from './keys.js';
export { decodeS3MetadataValue, encodeS3MetadataValue, normaliseMetadata } from './metadata.js';
export type { NormalisedMetadata } from './metadata.js';
export { inspectMetadata, parseEnvelope, parseInstructionFileKey } from './parse.js';
export type { Inspection, RawMetadata, WrappedKey } from './parse.js';
export { withRewrappedKey } from './rewrap.js';
export type { RewrappedKey } from './rewrap.js';
export { serialiseEnvelope } from './serialise.js';
export { NEW_CONTENT_SUITE, SUITES } from './suites.js';
export type { CommittingKdf, ContentSuite } from './suites.js';
export type { SerialisedEnvelope } from './serialise.js';
