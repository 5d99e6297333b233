import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { keptSettings, type WriteResult } from './conditional-writes.js';
import { s3Failure } from './errors.js';
import { PartWriter } from './part-writer.js';
import type { ObjectSnapshot } from './snapshot.js';
import { noJournal, type UploadJournal } from './upload-journal.js';

export interface ReplacementInput {
  readonly snapshot: ObjectSnapshot;
  /** The new ciphertext; it ends only after the old content authenticated, so completion waits for that. */
  readonly body: Readable;
  readonly metadata: Record<string, string>;
  readonly tagging: string | undefined;
  /** Size of the new body when known, so parts can be sized for objects up to 5 TB. */
  readonly contentLength?: number;
}

export interface ReplacementOptions {
  readonly partBytes?: number;
  readonly queueSize?: number;
  readonly journal?: UploadJournal;
}

/**
 * Each upload holds `queueSize + 1` part buffers of this size (src/s3/part-writer.ts): 40 MiB per
 * object in flight at the defaults, the largest share of a rekey's own memory (docs/benchmarks.md, memory).
 */
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
/** Part uploads in flight per object. */
export const DEFAULT_QUEUE_SIZE = 4;
/** S3 allows 10,000 parts; leave headroom for a body that turns out longer than announced. */
const MAX_PLANNED_PARTS = 9_000;

export function partBytesFor(contentLength: number | undefined, preferred = DEFAULT_PART_BYTES): number {
  return Math.max(preferred, Math.ceil((contentLength ?? 0) / MAX_PLANNED_PARTS));
}

/**
 * Streams a new body over the object, conditional on the ETag read at the start (If-Match on
 * PutObject or CompleteMultipartUpload). Any error, from the body or from S3, aborts the upload and
 * leaves the original object as it was.
 */
export async function uploadReplacement(
  s3: S3Client,
  input: ReplacementInput,
  options: ReplacementOptions = {},
): Promise<WriteResult> {
  const { snapshot } = input;
  const writer = new PartWriter(
    s3,
    {
      Bucket: snapshot.bucket,
      Key: snapshot.key,
      Metadata: input.metadata,
      Tagging: input.tagging,
      IfMatch: snapshot.etag,
      ...keptSettings(snapshot),
    },
    {
      partBytes: partBytesFor(input.contentLength, options.partBytes),
      queueSize: options.queueSize ?? DEFAULT_QUEUE_SIZE,
      journal: options.journal ?? noJournal,
      expectedBytes: input.contentLength,
    },
  );
  try {
    return await writer.write(input.body);
  } catch (err) {
    input.body.destroy();
    throw s3Failure(err, `upload of s3://${snapshot.bucket}/${snapshot.key}`);
  }
}
