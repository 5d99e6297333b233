import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { keptSettings, type WriteResult } from './conditional-writes.js';
import { s3Failure } from './errors.js';
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
 * lib-storage holds `queueSize` parts in flight plus the one it fills and its concatenated copy, so
 * this sets most of a rekey's memory: 16 MiB parts peaked at 313–375 MiB RSS for one object, 8 MiB
 * parts stay under 300 MiB with the same four uploads in flight (docs/benchmarks.md, memory).
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
 * lib-storage starts the multipart upload itself; this client wrapper records the intent before the
 * upload is created and its id before the first part is sent, and clears it when the upload completes
 * or aborts.
 */
function journaling(s3: S3Client, snapshot: ObjectSnapshot, journal: UploadJournal): S3Client {
  const ref = (uploadId: string) => ({ bucket: snapshot.bucket, key: snapshot.key, uploadId });
  const send = async (command: Parameters<S3Client['send']>[0]) => {
    if (command instanceof CreateMultipartUploadCommand) await journal.starting({ bucket: snapshot.bucket, key: snapshot.key, at: Date.now() });
    const out = (await s3.send(command as never)) as { UploadId?: string };
    if (command instanceof CreateMultipartUploadCommand && out.UploadId) await journal.started(ref(out.UploadId));
    if (command instanceof CompleteMultipartUploadCommand || command instanceof AbortMultipartUploadCommand) {
      await journal.finished(ref(command.input.UploadId ?? ''));
    }
    return out;
  };
  return { config: s3.config, send } as unknown as S3Client;
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
  const upload = new Upload({
    client: journaling(s3, snapshot, options.journal ?? noJournal),
    partSize: partBytesFor(input.contentLength, options.partBytes),
    queueSize: options.queueSize ?? DEFAULT_QUEUE_SIZE,
    leavePartsOnError: false,
    params: {
      Bucket: snapshot.bucket,
      Key: snapshot.key,
      Body: input.body,
      Metadata: input.metadata,
      Tagging: input.tagging,
      IfMatch: snapshot.etag,
      ...keptSettings(snapshot),
    },
  });
  try {
    const out = await upload.done();
    return { etag: out.ETag, versionId: out.VersionId };
  } catch (err) {
    input.body.destroy();
    throw s3Failure(err, `upload of s3://${snapshot.bucket}/${snapshot.key}`);
  }
}
