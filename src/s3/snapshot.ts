import type { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  type GetObjectCommandOutput,
  type HeadObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { RekeyError } from '../errors.js';
import { s3Failure } from './errors.js';

/** The headers S3 keeps with an object that a rewrite must send again (docs/design.md §4.5). */
export interface ContentHeaders {
  readonly ContentType?: string;
  readonly ContentEncoding?: string;
  readonly ContentLanguage?: string;
  readonly ContentDisposition?: string;
  readonly CacheControl?: string;
  readonly Expires?: Date;
  readonly WebsiteRedirectLocation?: string;
}

export interface ServerSideEncryptionSettings {
  readonly ServerSideEncryption?: HeadObjectCommandOutput['ServerSideEncryption'];
  readonly SSEKMSKeyId?: string;
  readonly BucketKeyEnabled?: boolean;
}

export interface ObjectLockState {
  readonly mode?: string;
  readonly retainUntil?: Date;
  readonly legalHold: boolean;
}

/** What one HEAD told about an object; every later write is conditional on `etag`. */
export interface ObjectSnapshot {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  readonly etag: string;
  readonly size: number;
  readonly lastModified: Date | undefined;
  /** User metadata as S3 returns it: keys lowercased, without the `x-amz-meta-` prefix. */
  readonly metadata: Readonly<Record<string, string>>;
  readonly headers: ContentHeaders;
  readonly storageClass: string | undefined;
  readonly sse: ServerSideEncryptionSettings;
  readonly lock: ObjectLockState;
  /** `x-amz-tagging-count`: undefined when S3 reported none (no tags, or no permission to read them). */
  readonly tagCount: number | undefined;
}

function pick<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (source[k] !== undefined && source[k] !== null) out[k] = source[k];
  return out;
}

const CONTENT_HEADERS = [
  'ContentType',
  'ContentEncoding',
  'ContentLanguage',
  'ContentDisposition',
  'CacheControl',
  'Expires',
  'WebsiteRedirectLocation',
] as const;

const SSE_SETTINGS = ['ServerSideEncryption', 'SSEKMSKeyId', 'BucketKeyEnabled'] as const;

export async function headObject(s3: S3Client, bucket: string, key: string, versionId?: string): Promise<ObjectSnapshot> {
  let out: HeadObjectCommandOutput;
  try {
    out = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
  } catch (err) {
    throw s3Failure(err, `HEAD s3://${bucket}/${key}`);
  }
  return snapshotOf(bucket, key, out, 'HEAD');
}

/** HEAD and GET answer with the same headers; a GET's describe exactly the body it streams. */
function snapshotOf(bucket: string, key: string, out: HeadObjectCommandOutput | GetObjectCommandOutput, verb: string): ObjectSnapshot {
  /* Precondition: every conditional write needs the ETag this read saw. */
  if (!out.ETag) throw new RekeyError('s3-error', `${verb} s3://${bucket}/${key} returned no ETag`);
  return {
    bucket,
    key,
    versionId: out.VersionId,
    etag: out.ETag,
    size: out.ContentLength ?? 0,
    lastModified: out.LastModified,
    metadata: out.Metadata ?? {},
    headers: pick(out, CONTENT_HEADERS),
    storageClass: out.StorageClass,
    sse: pick(out, SSE_SETTINGS),
    lock: {
      mode: out.ObjectLockMode,
      retainUntil: out.ObjectLockRetainUntilDate,
      legalHold: out.ObjectLockLegalHoldStatus === 'ON',
    },
    tagCount: out.TagCount,
  };
}

/**
 * An object and its body from one GET: the headers HEAD would give, and the body those headers
 * describe, not yet read. The caller takes the body or releases it.
 */
export async function openObject(s3: S3Client, bucket: string, key: string, versionId?: string): Promise<{ snapshot: ObjectSnapshot; body: OpenedBody }> {
  let out: GetObjectCommandOutput;
  try {
    out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
  } catch (err) {
    throw s3Failure(err, `GET s3://${bucket}/${key}`);
  }
  const body = new OpenedBody(out.Body as Readable);
  try {
    return { snapshot: snapshotOf(bucket, key, out, 'GET'), body };
  } catch (err) {
    body.release(0);
    throw err;
  }
}

/**
 * A body whose GET answered and which nobody reads yet: the socket holds it back (TCP flow control), so
 * waiting costs no memory. After `maxIdleMs` it is given up, since a server may drop a connection that
 * stalls, and the reader sends a GET of its own.
 */
export class OpenedBody {
  private readonly openedAt = Date.now();
  private taken = false;

  constructor(private readonly stream: Readable) {
    // An error while nobody reads (a reset socket) must not go unhandled; `take` then declines the stream.
    stream.on('error', () => undefined);
  }

  /** The body, once, when it is still whole and fresh; undefined means: read it again. */
  take(maxIdleMs = OPENED_BODY_MAX_IDLE_MS): Readable | undefined {
    if (this.taken) return undefined;
    this.taken = true;
    if (this.stream.destroyed || this.stream.readableDidRead || Date.now() - this.openedAt > maxIdleMs) {
      this.stream.destroy();
      return undefined;
    }
    return this.stream;
  }

  /**
   * A body not taken: one of up to `drainBytes` is read to its end and dropped, which keeps the
   * connection for the next request; a longer one is cut, which costs the connection, not its bytes.
   */
  release(size: number, drainBytes = DRAIN_BYTES): void {
    if (this.taken) return;
    this.taken = true;
    if (size <= drainBytes) this.stream.resume();
    else this.stream.destroy();
  }
}

/** Longer than KMS answers take, shorter than servers let a connection stall. */
export const OPENED_BODY_MAX_IDLE_MS = 10_000;
const DRAIN_BYTES = 256 * 1024;

/** The object as HEAD sees it; undefined when it does not exist (any other failure throws). */
export async function headIfExists(s3: S3Client, bucket: string, key: string, versionId?: string): Promise<ObjectSnapshot | undefined> {
  try {
    return await headObject(s3, bucket, key, versionId);
  } catch (err) {
    if (err instanceof RekeyError && err.reason === 'gone') return undefined;
    throw err;
  }
}

/** A retention period still running or a legal hold means the old version cannot go: rekey reports, never bypasses. */
export function isLocked(lock: ObjectLockState, now = new Date()): boolean {
  return lock.legalHold || (lock.retainUntil !== undefined && lock.retainUntil > now);
}

/** What a rewrite of an object must send again besides its metadata and tags (docs/design.md §4.5). */
export type KeptSettings = Pick<ObjectSnapshot, 'headers' | 'sse' | 'storageClass'>;

/**
 * The body of exactly the version HEAD saw: a GET conditional on its ETag (and version id), so a write
 * that landed since fails the read with 412 instead of streaming other content.
 */
export async function readSnapshotBody(s3: S3Client, snapshot: Pick<ObjectSnapshot, 'bucket' | 'key' | 'versionId' | 'etag'>): Promise<Readable> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: snapshot.bucket, Key: snapshot.key, VersionId: snapshot.versionId, IfMatch: snapshot.etag }));
    return out.Body as Readable;
  } catch (err) {
    throw s3Failure(err, `GET s3://${snapshot.bucket}/${snapshot.key}`);
  }
}

export interface SmallObject extends KeptSettings {
  readonly body: Buffer;
  readonly etag: string;
  /** Set in a versioned bucket: the exact version read. */
  readonly versionId: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tagCount: number | undefined;
}

/** Reads a small object whole (instruction files); `undefined` when it does not exist. */
export async function readSmallObject(
  s3: S3Client,
  bucket: string,
  key: string,
  maxBytes = 64 * 1024,
  versionId?: string,
): Promise<SmallObject | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
    /* Precondition: an instruction file is a few hundred bytes; a huge one is not ours to buffer. */
    if ((out.ContentLength ?? 0) > maxBytes) {
      out.Body?.transformToWebStream().cancel().catch(() => undefined);
      throw new RekeyError('bad-metadata', `s3://${bucket}/${key} is ${out.ContentLength} bytes, too large for an instruction file`);
    }
    const body = Buffer.from((await out.Body?.transformToByteArray()) ?? []);
    return {
      body,
      etag: out.ETag ?? '',
      versionId: out.VersionId,
      metadata: out.Metadata ?? {},
      headers: pick(out, CONTENT_HEADERS),
      storageClass: out.StorageClass,
      sse: pick(out, SSE_SETTINGS),
      tagCount: out.TagCount,
    };
  } catch (err) {
    if (err instanceof RekeyError) throw err;
    const failure = s3Failure(err, `GET s3://${bucket}/${key}`);
    if (failure.reason === 'gone') return undefined;
    throw failure;
  }
}

/**
 * The version directly below `versionId` in a versioned bucket's history of `key` (delete markers
 * aside); undefined when `versionId` is the oldest, or is not listed any more.
 */
export async function versionBelow(s3: S3Client, bucket: string, key: string, versionId: string): Promise<string | undefined> {
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  let found = false;
  for (;;) {
    let out;
    try {
      out = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker, MaxKeys: 100 }));
    } catch (err) {
      throw s3Failure(err, `LIST versions of s3://${bucket}/${key}`);
    }
    // Versions of one key are listed newest first, and this key sorts before every longer key it prefixes.
    for (const v of out.Versions ?? []) {
      if (v.Key !== key) return undefined;
      if (found) return v.VersionId;
      found = v.VersionId === versionId;
    }
    if (!out.IsTruncated) return undefined;
    [keyMarker, versionIdMarker] = [out.NextKeyMarker, out.NextVersionIdMarker];
  }
}
