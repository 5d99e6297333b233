import { CBC, GCM, V3_SUITE } from './envelope.js';
import type { ContentCipher } from './envelope.js';
import { MetaKey } from './keys.js';

/**
 * The content-encryption suites of the S3EC formats, one row each (docs/formats.md §1.12). The parser,
 * the serialiser, the envelope builder and the cipher specs all read these rows, so a suite's lengths,
 * derivation and metadata names are stated once; adding a suite starts here.
 */

/** HKDF-SHA512 key derivation with key commitment (V3): salt = message id, IKM = data key. */
export interface CommittingKdf {
  readonly hash: 'sha512';
  /** The HKDF info of the content key is the suite id's two bytes followed by this ASCII label. */
  readonly contentKeyLabel: string;
  /** The HKDF info of the commitment is the suite id's two bytes followed by this ASCII label. */
  readonly commitmentLabel: string;
  readonly contentKeyLength: number;
  readonly commitmentLength: number;
  /** The per-object random salt, stored as `metadata.messageId`. */
  readonly messageIdLength: number;
}

export interface ContentSuite {
  /** The suite id of the S3EC algorithm-suite table. */
  readonly id: number;
  /** The value stored in `metadata.cipher`. */
  readonly cipher: ContentCipher;
  readonly mode: 'gcm' | 'cbc';
  /** IV bytes: read from `metadata.iv` per object, or the suite's `fixedIv`. */
  readonly ivLength: number;
  /** The IV every object of a committing suite uses: each derived content key encrypts once. */
  readonly fixedIv?: Uint8Array;
  /** Additional authenticated data of the content cipher. */
  readonly aad?: Uint8Array;
  /** Tag bytes appended to the ciphertext (V2 records them in bits, `x-amz-tag-len`); 0 when unauthenticated. */
  readonly tagLength: number;
  readonly kdf?: CommittingKdf;
  /** Plaintext bytes one key and IV may cover. */
  readonly maxPlaintextLength: number;
  /** Whether rekey writes new content in this suite; unauthenticated content is read, never written. */
  readonly writable: boolean;
  /** The content-metadata keys (without `x-amz-meta-`) that carry this suite's values. */
  readonly metadata: {
    readonly cipher: string;
    readonly iv?: string;
    readonly messageId?: string;
    readonly commitment?: string;
  };
}

/** GCM's limit of 2^39−256 bits of plaintext under one key and IV, in bytes. */
const GCM_LIMIT = 2 ** 36 - 32;

function suiteIdBytes(id: number): Buffer {
  return Buffer.from([id >> 8, id & 0xff]);
}

export const SUITES = {
  [GCM]: {
    id: 0x0072,
    cipher: GCM,
    mode: 'gcm',
    ivLength: 12,
    tagLength: 16,
    maxPlaintextLength: GCM_LIMIT,
    writable: true,
    metadata: { cipher: MetaKey.cekAlg, iv: MetaKey.iv },
  },
  [CBC]: {
    id: 0x0070,
    cipher: CBC,
    mode: 'cbc',
    ivLength: 16,
    tagLength: 0,
    // A CBC body is only ever read to be re-encrypted under GCM, so GCM's limit is the one that binds.
    maxPlaintextLength: GCM_LIMIT,
    writable: false,
    metadata: { cipher: MetaKey.cekAlg, iv: MetaKey.iv },
  },
  [V3_SUITE]: {
    id: 0x0073,
    cipher: V3_SUITE,
    mode: 'gcm',
    ivLength: 12,
    fixedIv: Buffer.alloc(12, 0x01),
    aad: suiteIdBytes(0x0073),
    tagLength: 16,
    kdf: {
      hash: 'sha512',
      contentKeyLabel: 'DERIVEKEY',
      commitmentLabel: 'COMMITKEY',
      contentKeyLength: 32,
      commitmentLength: 28,
      messageIdLength: 28,
    },
    maxPlaintextLength: GCM_LIMIT,
    writable: true,
    metadata: { cipher: MetaKey.v3Cipher, messageId: MetaKey.v3MessageId, commitment: MetaKey.v3Commitment },
  },
} as const satisfies Readonly<Record<ContentCipher, ContentSuite>>;

/** The suite rekey writes for each format version it writes. */
export const NEW_CONTENT_SUITE = { v2: SUITES[GCM], v3: SUITES[V3_SUITE] } as const;

/** The HKDF info for `label` under `suite`: the suite id, big-endian, then the ASCII label. */
export function kdfInfo(suite: ContentSuite, label: string): Buffer {
  return Buffer.concat([suiteIdBytes(suite.id), Buffer.from(label, 'ascii')]);
}

/** `x-amz-tag-len` as writers store it: the tag length in bits. */
export function tagLengthBits(suite: ContentSuite): string {
  return String(suite.tagLength * 8);
}
