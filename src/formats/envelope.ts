/** Where an object's content metadata lives (docs/formats.md §1.1, §1.8). */
export type KeyLocation = 'object-metadata' | 'instruction-file';

export type FormatVersion = 'v1' | 'v2' | 'v3';

export const GCM = 'AES/GCM/NoPadding';
export const CBC = 'AES/CBC/PKCS5Padding';
/** The V3 suite ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY (0x0073) as `x-amz-c` writes it. */
export const V3_SUITE = '115';

export type LegacyContentCipher = typeof GCM | typeof CBC;
export type ContentCipher = LegacyContentCipher | typeof V3_SUITE;

/** The KMS wraps rekey can rotate. */
export type KmsWrapAlgorithm = 'kms' | 'kms+context';
/**
 * Raw-key wraps, recognised so an object is classified, but not rotatable by rekey. `AES` and `RSA` are
 * what a V1 object without `x-amz-wrap-alg` is taken to use (docs/formats.md §1.3).
 */
export type RawWrapAlgorithm =
  | 'AES/GCM'
  | 'AESWrap'
  | 'RSA-OAEP-SHA1'
  | 'RSA/ECB/OAEPWithSHA-256AndMGF1Padding'
  | 'AES'
  | 'RSA';
export type WrapAlgorithm = KmsWrapAlgorithm | RawWrapAlgorithm;

export type EncryptionContext = Readonly<Record<string, string>>;

/** The EC key that binds the content cipher under `kms+context` (docs/formats.md §1.5). */
export const CEK_ALG_CONTEXT_KEY = 'aws:x-amz-cek-alg';
/** The EC key that names the KMS key under the legacy `kms` wrap. */
export const KMS_CMK_ID_CONTEXT_KEY = 'kms_cmk_id';
/** Keys the S3EC reserves; a caller's own context must not set them. */
export const RESERVED_CONTEXT_KEYS: readonly string[] = [CEK_ALG_CONTEXT_KEY, KMS_CMK_ID_CONTEXT_KEY];

interface EnvelopeFields {
  readonly location: KeyLocation;
  readonly wrapAlgorithm: WrapAlgorithm;
  /** For KMS wraps the KMS CiphertextBlob. */
  readonly encryptedDataKey: Uint8Array;
  /** The KMS encryption context for KMS wraps (`x-amz-matdesc` or `x-amz-t`); `{}` for raw wraps. */
  readonly encryptionContext: EncryptionContext;
  /** The material description of raw wraps (`x-amz-matdesc` or `x-amz-m`); `{}` for KMS wraps. */
  readonly materialDescription: EncryptionContext;
  /** `x-amz-unencrypted-content-length`, when the writer recorded it. */
  readonly unencryptedContentLength?: number;
}

/** V1 (`x-amz-key`) and V2 (`x-amz-key-v2`): one IV, GCM or CBC content. */
export interface LegacyEnvelope extends EnvelopeFields {
  readonly version: 'v1' | 'v2';
  readonly contentCipher: LegacyContentCipher;
  /** 12 bytes for GCM, 16 for CBC. */
  readonly iv: Uint8Array;
}

/** V3: key-committing GCM; the content key is derived from the data key and the message id. */
export interface V3Envelope extends EnvelopeFields {
  readonly version: 'v3';
  readonly contentCipher: typeof V3_SUITE;
  readonly messageId: Uint8Array;
  readonly keyCommitment: Uint8Array;
}

export type Envelope = LegacyEnvelope | V3Envelope;

export const KMS_WRAPS: ReadonlySet<string> = new Set<KmsWrapAlgorithm>(['kms', 'kms+context']);
export const RAW_WRAPS: ReadonlySet<string> = new Set<RawWrapAlgorithm>([
  'AES/GCM',
  'AESWrap',
  'RSA-OAEP-SHA1',
  'RSA/ECB/OAEPWithSHA-256AndMGF1Padding',
]);

/** `x-amz-w` codes (docs/formats.md §1.7); V3 has no legacy wraps. */
export const V3_WRAP_CODES: Readonly<Record<string, WrapAlgorithm>> = {
  '02': 'AES/GCM',
  '12': 'kms+context',
  '22': 'RSA-OAEP-SHA1',
};

export function isKmsWrap(wrap: WrapAlgorithm): wrap is KmsWrapAlgorithm {
  return KMS_WRAPS.has(wrap);
}
