/**
 * Content-metadata key names as the S3 Encryption Clients write them, without S3's `x-amz-meta-` prefix
 * (docs/formats.md §1.1, §1.3, §1.4, §1.7).
 */
export const MetaKey = {
  keyV1: 'x-amz-key',
  keyV2: 'x-amz-key-v2',
  iv: 'x-amz-iv',
  matdesc: 'x-amz-matdesc',
  cekAlg: 'x-amz-cek-alg',
  wrapAlg: 'x-amz-wrap-alg',
  tagLen: 'x-amz-tag-len',
  unencryptedLength: 'x-amz-unencrypted-content-length',
  v3Key: 'x-amz-3',
  v3Cipher: 'x-amz-c',
  v3Wrap: 'x-amz-w',
  v3Commitment: 'x-amz-d',
  v3MessageId: 'x-amz-i',
  v3Context: 'x-amz-t',
  v3MaterialDescription: 'x-amz-m',
} as const;

/** User metadata that marks an object as an instruction file rather than data (docs/formats.md §1.8). */
export const INSTRUCTION_FILE_MARKER = 'x-amz-crypto-instr-file';

export const DEFAULT_INSTRUCTION_FILE_SUFFIX = '.instruction';

/** Keys that exist only in one format version; two of them together mean the metadata is inconsistent. */
export const EXCLUSIVE_KEYS = [MetaKey.keyV1, MetaKey.keyV2, MetaKey.v3Key] as const;

/** The V3 keys that always stay in object metadata, even when the rest lives in an instruction file. */
export const V3_OBJECT_KEYS = [MetaKey.v3Cipher, MetaKey.v3Commitment, MetaKey.v3MessageId] as const;

/** Every key an S3EC writer may emit; rewriting an envelope replaces exactly these. */
export const S3EC_METADATA_KEYS: ReadonlySet<string> = new Set<string>(Object.values(MetaKey));

export function isS3ecMetadataKey(key: string): boolean {
  return S3EC_METADATA_KEYS.has(key);
}
