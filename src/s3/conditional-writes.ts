import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { s3Failure } from './errors.js';
import type { KeptSettings, ObjectSnapshot } from './snapshot.js';
import { readTagging } from './tagging.js';
import { noJournal, type UploadJournal } from './upload-journal.js';

/** CopyObject copies at most 5 GB in one request; larger objects need UploadPartCopy. */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;

export interface WriteResult {
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
}

export interface ReplaceMetadataOptions {
  readonly journal?: UploadJournal;
  /** Part size for objects beyond the single-copy limit. */
  readonly copyPartBytes?: number;
  readonly copyConcurrency?: number;
}

/** Everything that must be sent again when a rewrite replaces the object (docs/design.md §4.5). */
export function keptSettings(settings: KeptSettings) {
  return { ...settings.headers, ...settings.sse, StorageClass: settings.storageClass as never };
}

/**
 * The key's current version, never the version id the snapshot read: S3 checks CopySourceIfMatch on
 * the source named, and a version is immutable, so a pinned source would pass its condition even after
 * another writer put a newer version, which the copy would then bury under the old content. Unpinned,
 * the condition holds only while the current version still has the ETag read.
 */
function copySource(snapshot: ObjectSnapshot): string {
  return `${snapshot.bucket}/${encodeURIComponent(snapshot.key).replace(/%2F/g, '/')}`;
}

/**
 * Rewrites an object's user metadata with a server-side copy onto itself, conditional on the ETag
 * that was read: a concurrent writer makes the copy fail with 412 and its write survives.
 * Tags are kept by the copy (TaggingDirective COPY); headers, storage class and SSE are sent again.
 */
export async function replaceMetadata(
  s3: S3Client,
  snapshot: ObjectSnapshot,
  metadata: Record<string, string>,
  options: ReplaceMetadataOptions = {},
): Promise<WriteResult> {
  if (snapshot.size > MAX_SINGLE_COPY_BYTES) return replaceMetadataMultipart(s3, snapshot, metadata, options);
  try {
    const out = await s3.send(
      new CopyObjectCommand({
        Bucket: snapshot.bucket,
        Key: snapshot.key,
        CopySource: copySource(snapshot),
        CopySourceIfMatch: snapshot.etag,
        MetadataDirective: 'REPLACE',
        TaggingDirective: 'COPY',
        Metadata: metadata,
        ...keptSettings(snapshot),
      }),
    );
    return { etag: out.CopyObjectResult?.ETag, versionId: out.VersionId };
  } catch (err) {
    throw s3Failure(err, `copy s3://${snapshot.bucket}/${snapshot.key} onto itself`);
  }
}

async function replaceMetadataMultipart(
  s3: S3Client,
  snapshot: ObjectSnapshot,
  metadata: Record<string, string>,
  options: ReplaceMetadataOptions,
): Promise<WriteResult> {
  const journal = options.journal ?? noJournal;
  const partBytes = options.copyPartBytes ?? 512 * 1024 ** 2;
  const { bucket, key } = snapshot;
  let uploadId: string | undefined;
  try {
    const tagging = await readTagging(s3, snapshot);
    await journal.starting({ bucket, key, at: Date.now() });
    const created = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: metadata, Tagging: tagging, ...keptSettings(snapshot) }),
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new Error('CreateMultipartUpload returned no UploadId');
    await journal.started({ bucket, key, uploadId });
    const limit = pLimit(options.copyConcurrency ?? 4);
    const partCount = Math.ceil(snapshot.size / partBytes);
    const parts = await Promise.all(
      Array.from({ length: partCount }, (_, i) =>
        limit(async () => {
          const first = i * partBytes;
          const last = Math.min(snapshot.size, first + partBytes) - 1;
          const out = await s3.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: i + 1,
              CopySource: copySource(snapshot),
              CopySourceIfMatch: snapshot.etag,
              CopySourceRange: `bytes=${first}-${last}`,
            }),
          );
          return { PartNumber: i + 1, ETag: out.CopyPartResult?.ETag };
        }),
      ),
    );
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        IfMatch: snapshot.etag,
        MultipartUpload: { Parts: parts },
      }),
    );
    await journal.finished({ bucket, key, uploadId });
    return { etag: done.ETag, versionId: done.VersionId };
  } catch (err) {
    if (uploadId) await abortUpload(s3, { bucket, key, uploadId }, journal);
    throw s3Failure(err, `multipart copy of s3://${bucket}/${key} onto itself`);
  }
}

/**
 * Aborts the upload; resolves `true` when it was still open, `false` when S3 no longer knew it (aborted
 * meanwhile by someone else, or completed).
 */
export async function abortUpload(
  s3: S3Client,
  upload: { bucket: string; key: string; uploadId: string },
  journal: UploadJournal = noJournal,
): Promise<boolean> {
  let wasOpen = true;
  try {
    await s3.send(new AbortMultipartUploadCommand({ Bucket: upload.bucket, Key: upload.key, UploadId: upload.uploadId }));
  } catch (err) {
    /* Postcondition: an upload S3 no longer knows is as good as aborted. */
    if (!isUnknownUpload(err)) throw s3Failure(err, `abort upload of s3://${upload.bucket}/${upload.key}`);
    wasOpen = false;
  }
  await journal.finished(upload);
  return wasOpen;
}

function isUnknownUpload(err: unknown): boolean {
  return (err as { name?: string }).name === 'NoSuchUpload' || s3Failure(err, 'upload').reason === 'gone';
}

export interface PutSmallObjectInput {
  readonly bucket: string;
  readonly key: string;
  readonly body: Buffer | string;
  readonly metadata: Record<string, string>;
  /** The ETag read before; `undefined` only when the object must not exist yet. */
  readonly ifMatch: string | undefined;
  /** The headers, SSE settings and storage class to write with, e.g. those of the file replaced. */
  readonly settings?: KeptSettings;
  /** Tags as the `Tagging` parameter wants them. */
  readonly tagging?: string | undefined;
}

/** A conditional PutObject: If-Match the ETag read, or If-None-Match * for a new object. */
export async function putSmallObject(s3: S3Client, input: PutSmallObjectInput): Promise<WriteResult> {
  try {
    const out = await s3.send(
      new PutObjectCommand({
        Bucket: input.bucket,
        Key: input.key,
        Body: input.body,
        Metadata: input.metadata,
        Tagging: input.tagging,
        ...(input.settings ? keptSettings(input.settings) : {}),
        ...(input.ifMatch ? { IfMatch: input.ifMatch } : { IfNoneMatch: '*' }),
      }),
    );
    return { etag: out.ETag, versionId: out.VersionId };
  } catch (err) {
    throw s3Failure(err, `conditional PUT s3://${input.bucket}/${input.key}`);
  }
}

/** Deletes an object only while it still has the ETag read: another writer's newer object stays. */
export async function deleteIfUnchanged(s3: S3Client, at: { bucket: string; key: string; etag: string }): Promise<{ deleteMarkerVersionId: string | undefined }> {
  try {
    const out = await s3.send(new DeleteObjectCommand({ Bucket: at.bucket, Key: at.key, IfMatch: at.etag }));
    return { deleteMarkerVersionId: out.DeleteMarker ? out.VersionId : undefined };
  } catch (err) {
    throw s3Failure(err, `conditional DELETE s3://${at.bucket}/${at.key}`);
  }
}
