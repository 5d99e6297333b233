import type { S3Client } from '@aws-sdk/client-s3';
import { FormatError, RekeyError } from '../errors.js';
import {
  DEFAULT_INSTRUCTION_FILE_SUFFIX,
  INSTRUCTION_FILE_MARKER,
  inspectMetadata,
  normaliseMetadata,
  parseInstructionFileKey,
  type WrappedKey,
} from '../formats/index.js';
import { deleteIfUnchanged } from '../s3/conditional-writes.js';
import { headIfExists, readSmallObject, type SmallObject } from '../s3/snapshot.js';
import type { IntentLog } from './intent.js';
import { notRotated, type Mode, type ObjectOutcome, type ObjectRef } from './outcome.js';

/**
 * The scope of a campaign and of `rekey audit` is every listed entry, whatever its name: a key ending
 * in `.instruction` is an instruction file only when its body is one (docs/design.md §3.1). Such
 * a file travels with its object while the object reads its envelope from it; once no object does
 * (the object is gone, or carries its own envelope in metadata, which readers take first), the file
 * is an orphan: a wrapped data key that protects nothing readable, yet still names the old key.
 */
export type InstructionEntry =
  /** Not an instruction file: an object of its own, rotated and audited like any other. */
  | { readonly kind: 'data' }
  | { readonly kind: 'in-use'; readonly base: string; readonly file: SmallObject; readonly wrapped: WrappedKey }
  | { readonly kind: 'orphan'; readonly base: string; readonly file: SmallObject; readonly wrapped: WrappedKey; readonly why: string };

export function isInstructionFileName(key: string): boolean {
  return key.endsWith(DEFAULT_INSTRUCTION_FILE_SUFFIX) && key.length > DEFAULT_INSTRUCTION_FILE_SUFFIX.length;
}

/** Tells what an entry named `….instruction` is. A noncurrent version is told by its body alone. */
export async function inspectInstructionEntry(s3: S3Client, ref: ObjectRef): Promise<InstructionEntry> {
  let file: SmallObject | undefined;
  try {
    file = await readSmallObject(s3, ref.bucket, ref.key, undefined, ref.versionId);
  } catch (err) {
    // Too large for an instruction file: data.
    if (err instanceof RekeyError && err.reason === 'bad-metadata') return { kind: 'data' };
    throw err;
  }
  if (file === undefined) throw new RekeyError('gone', `s3://${ref.bucket}/${ref.key} no longer exists`);
  let wrapped: WrappedKey;
  try {
    wrapped = parseInstructionFileKey(file.body);
  } catch (err) {
    const marked = Object.hasOwn(normaliseMetadata(file.metadata), INSTRUCTION_FILE_MARKER);
    /* Precondition: a file marked as an instruction file that does not parse is unreadable, not data. */
    if (err instanceof FormatError && !marked) return { kind: 'data' };
    throw err;
  }
  const base = ref.key.slice(0, -DEFAULT_INSTRUCTION_FILE_SUFFIX.length);
  if (ref.versionId !== undefined) return { kind: 'in-use', base, file, wrapped };
  const why = await orphaned(s3, ref.bucket, base);
  return why === undefined ? { kind: 'in-use', base, file, wrapped } : { kind: 'orphan', base, file, wrapped, why };
}

/** Why no object reads its envelope from `<base>.instruction`; undefined when one does. */
async function orphaned(s3: S3Client, bucket: string, base: string): Promise<string | undefined> {
  const object = await headIfExists(s3, bucket, base);
  if (object === undefined) return `s3://${bucket}/${base} does not exist`;
  return inspectMetadata(object.metadata).kind === 'envelope' ? `s3://${bucket}/${base} carries its own envelope in metadata, which readers take first` : undefined;
}

/**
 * The outcome of an instruction-file entry in a campaign: it moves with its object; an orphan stays
 * (reported, so the closing verification can count it) or, when the campaign asks, is deleted after
 * checking once more that no object reads it, and only if it is still the file that was read.
 */
export async function settleInstructionEntry(
  s3: S3Client,
  ref: ObjectRef,
  mode: Mode,
  entry: Exclude<InstructionEntry, { kind: 'data' }>,
  options: { readonly removeOrphans: boolean; readonly intents?: IntentLog | undefined },
): Promise<ObjectOutcome> {
  const facts = { format: entry.wrapped.version, oldEtag: entry.file.etag, oldVersionId: entry.file.versionId };
  if (ref.versionId !== undefined) {
    return notRotated(ref, mode, 'noncurrent-version', `an old version of the instruction file of ${entry.base}; S3 cannot rewrite it in place (rekey audit --include-versions lists it)`, facts);
  }
  if (entry.kind === 'in-use') return notRotated(ref, mode, 'instruction-file', `the instruction file of ${entry.base}: it moves with its object`, facts);
  /* Precondition: a file this campaign's rekey of its object made stale is that rotation's to drop, whichever entry ran first. */
  const moved = await movedOutOf(s3, ref, entry.base, options.intents);
  if (moved === 'moving') return notRotated(ref, mode, 'instruction-file', `the instruction file of ${entry.base}: its object's rekey moves the envelope into metadata and drops this file`, facts);
  if (moved === 'gone') return notRotated(ref, mode, 'gone', `s3://${ref.bucket}/${ref.key} no longer exists (a rekey of its object drops it once the envelope is in metadata)`, facts);
  if (!options.removeOrphans) return notRotated(ref, mode, 'orphan-instruction-file', `an orphan instruction file: ${entry.why} (--remove-orphan-instruction-files deletes it)`, facts);
  /* Precondition: an orphan is removed only if, checked again now, no object reads it. */
  if ((await orphaned(s3, ref.bucket, entry.base)) === undefined) {
    return notRotated(ref, mode, 'instruction-file', `the instruction file of ${entry.base}: its object reads it again, so it stays and moves with its object`, facts);
  }
  await deleteIfUnchanged(s3, { bucket: ref.bucket, key: ref.key, etag: entry.file.etag });
  return notRotated(ref, mode, 'orphan-removed', `an orphan instruction file, removed: ${entry.why}`, facts);
}

/**
 * A rekey that moves an object's envelope from its instruction file into metadata writes the object,
 * then drops the file: in between, the file looks orphaned. The object's intent marks that window; a
 * file gone once it closed was dropped, and one still there after it is a true orphan.
 */
async function movedOutOf(s3: S3Client, ref: ObjectRef, base: string, intents: IntentLog | undefined): Promise<'moving' | 'gone' | undefined> {
  if (intents === undefined) return undefined;
  if (await intents.movingFromInstructionFile(ref.bucket, base)) return 'moving';
  return (await headIfExists(s3, ref.bucket, ref.key)) === undefined ? 'gone' : undefined;
}
