import { readFileSync } from 'node:fs';

/** Known-answer vectors copied from upstream (test/fixtures/vectors, never edited). */
function load<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/vectors/${name}`, import.meta.url), 'utf8')) as T;
}

export interface V2ContentVector {
  readonly id: string;
  readonly content_alg: string;
  readonly plaintext_data_key_hex?: string;
  readonly plaintext_data_key_b64?: string;
  readonly iv_hex?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly kms_encryption_context?: Readonly<Record<string, string>>;
  readonly expected_kms_encryption_context?: Readonly<Record<string, string>>;
  readonly expected_metadata_derived?: Readonly<Record<string, string>>;
  readonly ciphertext_hex: string;
  readonly plaintext_hex: string;
  readonly direction?: string;
}

export interface V3ObjectVector {
  readonly id: string;
  readonly expect: string;
  readonly plaintext_data_key_b64?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly metadata_override?: Readonly<Record<string, string>>;
  readonly base?: string;
  readonly kms_encryption_context?: Readonly<Record<string, string>>;
  readonly ciphertext_hex?: string;
  readonly plaintext_hex?: string;
}

export interface HkdfVector {
  readonly plaintext_data_key_hex: string;
  readonly message_id_hex: string;
  readonly derived_encryption_key_hex: string;
  readonly key_commitment_hex: string;
}

export interface GcmVector {
  readonly comment: string;
  readonly key: string;
  readonly iv: string;
  readonly pt: string;
  readonly aad: string;
  readonly ct: string;
  readonly tag: string;
}

export const v2Vectors = load<{ vectors: V2ContentVector[] }>('s3ec_v2_content_kats.json').vectors;
export const v3File = load<{ hkdf_kats: HkdfVector[]; object_kats: V3ObjectVector[] }>('s3ec_v3_commit_kats.json');
export const gcmFile = load<{ vectors: GcmVector[]; nist_vectors: GcmVector[] }>('aes_gcm_shared_kats.json');
export const metadataSamples = load<{ samples: Array<Record<string, unknown> & { id: string }> }>('metadata_samples.json').samples;

export function dataKeyBytes(v: { plaintext_data_key_hex?: string; plaintext_data_key_b64?: string }): Buffer {
  if (v.plaintext_data_key_hex !== undefined) return Buffer.from(v.plaintext_data_key_hex, 'hex');
  if (v.plaintext_data_key_b64 !== undefined) return Buffer.from(v.plaintext_data_key_b64, 'base64');
  throw new Error('vector has no plaintext data key');
}

export function sample(id: string): Record<string, unknown> {
  const found = metadataSamples.find((s) => s.id === id);
  if (found === undefined) throw new Error(`no metadata sample ${id}`);
  return found;
}

/** V3 object vectors with `base`/`metadata_override` resolved into full metadata and ciphertext. */
export function resolvedV3Objects(): Array<V3ObjectVector & { metadata: Record<string, string>; ciphertext_hex: string }> {
  return v3File.object_kats.map((v) => {
    const base = v.base === undefined ? undefined : v3File.object_kats.find((b) => b.id === v.base);
    const metadata = { ...(base?.metadata ?? {}), ...(v.metadata ?? {}), ...(v.metadata_override ?? {}) };
    const ciphertext_hex = v.ciphertext_hex ?? base?.ciphertext_hex ?? '';
    const plaintext_data_key_b64 = v.plaintext_data_key_b64 ?? base?.plaintext_data_key_b64;
    return { ...v, metadata, ciphertext_hex, ...(plaintext_data_key_b64 === undefined ? {} : { plaintext_data_key_b64 }) };
  });
}
