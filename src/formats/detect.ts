import { FormatError } from '../errors.js';
import { EXCLUSIVE_KEYS, INSTRUCTION_FILE_MARKER, MetaKey, S3EC_METADATA_KEYS, V3_OBJECT_KEYS } from './keys.js';
import type { NormalisedMetadata } from './metadata.js';

/**
 * How an object's own metadata says its envelope is laid out (docs/formats.md §1.2):
 * - `legacy`: V1/V2, all in object metadata;
 * - `v3`: V3, all in object metadata;
 * - `v3-split`: V3 with c/d/i in object metadata and the rest in the instruction file;
 * - `none`: no S3EC key; either not encrypted or a V1/V2 envelope kept wholly in an instruction file.
 */
export type MetadataLayout = 'legacy' | 'v3' | 'v3-split' | 'none';

/** Keys whose presence alone shows an S3EC writer was here; a plaintext length alone does not. */
const MARKER_KEYS = [...S3EC_METADATA_KEYS].filter((k) => k !== MetaKey.unencryptedLength);

export function classifyMetadata(meta: NormalisedMetadata): MetadataLayout {
  assertSingleFormat(meta, 'object metadata');
  if (has(meta, MetaKey.iv) && (has(meta, MetaKey.keyV1) || has(meta, MetaKey.keyV2))) return 'legacy';
  const v3ObjectKeys = V3_OBJECT_KEYS.every((k) => has(meta, k));
  if (has(meta, MetaKey.v3Key)) {
    /* Precondition: a V3 key in object metadata comes with its cipher, commitment and message id. */
    if (!v3ObjectKeys) throw new FormatError('unknown-format', 'x-amz-3 without x-amz-c, x-amz-d and x-amz-i');
    return 'v3';
  }
  if (v3ObjectKeys) return 'v3-split';
  const stray = MARKER_KEYS.filter((k) => has(meta, k));
  /* Precondition: S3EC keys, if any, form one complete layout; a partial set is not guessed at. */
  if (stray.length > 0) {
    throw new FormatError('unknown-format', `incomplete S3EC metadata (${stray.sort().join(', ')})`);
  }
  return 'none';
}

/** Keys exclusive to different format versions never appear together (docs/formats.md §1.2 step 5). */
export function assertSingleFormat(meta: NormalisedMetadata, where: string): void {
  const present = EXCLUSIVE_KEYS.filter((k) => has(meta, k));
  if (present.length > 1) {
    throw new FormatError('mixed-format', `${where} mixes format versions (${present.join(', ')})`);
  }
}

/** Instruction files must not carry c/d/i: those stay on the object so the file cannot redirect them. */
export function assertNoV3ObjectKeys(instruction: NormalisedMetadata): void {
  const present = V3_OBJECT_KEYS.filter((k) => has(instruction, k));
  if (present.length > 0) {
    throw new FormatError('bad-metadata', `instruction file carries object-only keys (${present.join(', ')})`);
  }
}

/** An instruction file is itself an S3 object; a campaign must not treat it as data. */
export function isInstructionFileObject(meta: NormalisedMetadata): boolean {
  return has(meta, INSTRUCTION_FILE_MARKER);
}

export function has(meta: NormalisedMetadata, key: string): boolean {
  return Object.hasOwn(meta, key);
}
