import type { Readable } from 'node:stream';
import {
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ConfigError, RekeyError } from '../errors.js';
import { abortUpload, type WriteResult } from './conditional-writes.js';
import { abortedMeanwhile } from './errors.js';
import type { UploadJournal, UploadRef } from './upload-journal.js';

/** Everything of a PutObject but the body: each request of the upload is built from it, as lib-storage did. */
export type ObjectParams = Omit<PutObjectCommandInput, 'Body'> & { readonly Bucket: string; readonly Key: string };

export interface PartWriterOptions {
  readonly partBytes: number;
  /** Part uploads in flight; the writer holds `queueSize + 1` part buffers, one of them filling. */
  readonly queueSize: number;
  readonly journal: UploadJournal;
  /**
   * The body's length when announced. A body announced shorter than a part is copied into a buffer of
   * about its own size, so objects of a few KiB do not each hold a whole part buffer; one that turns
   * out longer moves to a part buffer.
   */
  readonly expectedBytes?: number | undefined;
}

/** S3's smallest part but the last. */
const MIN_PART_BYTES = 5 * 1024 * 1024;
/** S3's limit on the parts of one multipart upload. */
const MAX_PARTS = 10_000;

/** Room beyond the announced length: a rekey of CBC content adds a GCM tag that the old length did not count. */
const LENGTH_SLACK = 64;

/** Idle part buffers kept between uploads, so a worker rekeying object after object allocates none. */
const MAX_IDLE_BYTES = 64 * 1024 * 1024;

/**
 * Part buffers released by finished uploads, by size. They hold ciphertext only (what was sent to S3),
 * and only buffers whose request succeeded come back here (see {@link PartWriter}).
 */
class IdleBuffers {
  readonly #bySize = new Map<number, Buffer[]>();
  #bytes = 0;

  take(size: number): Buffer {
    const kept = this.#bySize.get(size)?.pop();
    if (kept === undefined) return Buffer.allocUnsafeSlow(size);
    this.#bytes -= size;
    return kept;
  }

  keep(buffer: Buffer): void {
    if (this.#bytes + buffer.length > MAX_IDLE_BYTES) return;
    const list = this.#bySize.get(buffer.length) ?? [];
    list.push(buffer);
    this.#bySize.set(buffer.length, list);
    this.#bytes += buffer.length;
  }
}

const idle = new IdleBuffers();

interface Part {
  readonly number: number;
  readonly buffer: Buffer;
  filled: number;
}

/**
 * Writes a stream as one object: a body that fits one part as a single PutObject, a longer one as a
 * multipart upload with up to `queueSize` parts in flight. The body's chunks are copied once, into
 * `queueSize + 1` reused part buffers; a buffer is filled again only after the UploadPart that sent it
 * succeeded, so the SDK's retries of that part (which resend the same bytes) never see it change.
 * A body that takes its chunks back (`release`, as the cipher pool's streams do) gets each one back as
 * soon as it is copied, to carry its next bytes. Any failure, of the body or of a request, stops
 * reading, waits for the parts in flight, aborts the upload and destroys the body.
 *
 * Checksums and retries stay the SDK's: the upload is created with CRC32 when the client computes
 * checksums whenever supported (its default, as lib-storage does), every part and the PutObject carry
 * the SDK's checksum, and the completion lists each part's; every request goes through the client's
 * retry strategy, in the caller's async context (so an object's retry budget counts them).
 */
export class PartWriter {
  readonly #parts: CompletedPart[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  readonly #free: Buffer[] = [];
  #made = 0;
  #creating: Promise<string> | undefined;
  /** The multipart upload while it is open: set once created, cleared once completed or aborted. */
  #upload: UploadRef | undefined;
  #failure: { readonly error: unknown } | undefined;
  #body: Readable | undefined;

  constructor(
    private readonly s3: S3Client,
    private readonly params: ObjectParams,
    private readonly options: PartWriterOptions,
  ) {
    /* Precondition: S3 refuses parts under 5 MiB but the last, and at least one part must be in flight. */
    if (options.partBytes < MIN_PART_BYTES) throw new ConfigError(`upload part size must be at least ${MIN_PART_BYTES} bytes (5 MiB), got ${options.partBytes}`);
    if (!Number.isInteger(options.queueSize) || options.queueSize < 1) throw new ConfigError(`upload queue size must be a positive integer, got ${options.queueSize}`);
  }

  async write(body: Readable): Promise<WriteResult> {
    this.#body = body;
    try {
      const last = await this.#fill(body);
      this.#throwIfFailed();
      if (last.number === 1) return await this.#put(last);
      await this.#send(last);
      await this.#settled();
      this.#throwIfFailed();
      return await this.#complete();
    } catch (err) {
      this.#fail(err);
      await this.#settled();
      const failure = this.#failure?.error ?? err;
      const wasOpen = await this.#abort();
      throw wasOpen === false ? abortedMeanwhile(failure, `upload of s3://${this.params.Bucket}/${this.params.Key}`) : failure;
    } finally {
      for (const buffer of this.#free) if (buffer.length === this.options.partBytes) idle.keep(buffer);
      this.#free.length = 0;
    }
  }

  /** Copies the body into part buffers, sending each full one once more bytes follow; returns the last. */
  async #fill(body: Readable): Promise<Part> {
    const { partBytes, expectedBytes } = this.options;
    const small = expectedBytes !== undefined && expectedBytes + LENGTH_SLACK < partBytes;
    let part: Part = { number: 1, buffer: small ? Buffer.allocUnsafe(expectedBytes + LENGTH_SLACK) : await this.#nextBuffer(), filled: 0 };
    for await (const chunk of body) {
      /* Precondition: the body yields bytes (a ciphertext stream never yields strings or objects). */
      if (!(chunk instanceof Uint8Array)) throw new RekeyError('internal', 'the upload body yielded a chunk that is not bytes');
      let offset = 0;
      while (offset < chunk.byteLength) {
        if (part.filled === part.buffer.length && part.buffer.length < partBytes) {
          // Longer than announced: the bytes so far move into a whole part buffer.
          const grown = await this.#nextBuffer();
          grown.set(part.buffer.subarray(0, part.filled));
          part = { ...part, buffer: grown };
        }
        if (part.filled === partBytes) {
          await this.#send(part);
          part = { number: part.number + 1, buffer: await this.#nextBuffer(), filled: 0 };
        }
        const n = Math.min(chunk.byteLength - offset, part.buffer.length - part.filled);
        part.buffer.set(chunk.subarray(offset, offset + n), part.filled);
        part.filled += n;
        offset += n;
      }
      releasable(body)?.release(chunk);
    }
    return part;
  }

  /** A free part buffer, waiting for a part in flight to succeed when all `queueSize + 1` are taken. */
  async #nextBuffer(): Promise<Buffer> {
    for (;;) {
      this.#throwIfFailed();
      const buffer = this.#free.pop();
      if (buffer !== undefined) return buffer;
      if (this.#made <= this.options.queueSize) {
        this.#made += 1;
        return idle.take(this.options.partBytes);
      }
      await Promise.race(this.#inFlight);
    }
  }

  /** Starts the part's upload once fewer than `queueSize` are in flight. */
  async #send(part: Part): Promise<void> {
    while (this.#inFlight.size >= this.options.queueSize) {
      this.#throwIfFailed();
      await Promise.race(this.#inFlight);
    }
    this.#throwIfFailed();
    const sending = this.#uploadPart(part).then(
      (done) => {
        this.#parts.push(done);
        this.#free.push(part.buffer);
      },
      // A failed part's buffer is dropped, not reused: its request may still be writing from it.
      (err: unknown) => this.#fail(err),
    );
    this.#inFlight.add(sending);
    void sending.finally(() => this.#inFlight.delete(sending));
  }

  async #uploadPart(part: Part): Promise<CompletedPart> {
    /* Precondition: S3 takes at most 10,000 parts (partBytesFor plans 9,000 from the announced length). */
    if (part.number > MAX_PARTS) {
      throw new RekeyError('too-large', `the body of s3://${this.params.Bucket}/${this.params.Key} needs more than ${MAX_PARTS} parts of ${this.options.partBytes} bytes`);
    }
    const uploadId = await (this.#creating ??= this.#create());
    const out = await this.s3.send(
      new UploadPartCommand({ ...this.params, UploadId: uploadId, PartNumber: part.number, Body: part.buffer.subarray(0, part.filled) }),
    );
    if (!out.ETag) throw new RekeyError('s3-error', `UploadPart ${part.number} of s3://${this.params.Bucket}/${this.params.Key} answered without an ETag`);
    const { ChecksumCRC32, ChecksumCRC32C, ChecksumCRC64NVME, ChecksumSHA1, ChecksumSHA256 } = out;
    return withoutUndefined({ PartNumber: part.number, ETag: out.ETag, ChecksumCRC32, ChecksumCRC32C, ChecksumCRC64NVME, ChecksumSHA1, ChecksumSHA256 });
  }

  /** The journal records the intent before the request and the upload id before any part is sent. */
  async #create(): Promise<string> {
    const { Bucket: bucket, Key: key } = this.params;
    await this.options.journal.starting({ bucket, key, at: Date.now() });
    const checksum = (await this.s3.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED' ? { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 } : {};
    const out = await this.s3.send(new CreateMultipartUploadCommand({ ...this.params, ...checksum }));
    if (!out.UploadId) throw new RekeyError('s3-error', `CreateMultipartUpload of s3://${bucket}/${key} returned no UploadId`);
    this.#upload = { bucket, key, uploadId: out.UploadId };
    await this.options.journal.started(this.#upload);
    return out.UploadId;
  }

  async #put(part: Part): Promise<WriteResult> {
    const out = await this.s3.send(new PutObjectCommand({ ...this.params, Body: part.buffer.subarray(0, part.filled) }));
    this.#free.push(part.buffer);
    return { etag: out.ETag, versionId: out.VersionId };
  }

  async #complete(): Promise<WriteResult> {
    const upload = this.#upload;
    /* Precondition: a body of more than one part created its upload before sending them. */
    if (upload === undefined) throw new RekeyError('internal', 'completing a multipart upload that was never created');
    const parts = [...this.#parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    const out = await this.s3.send(new CompleteMultipartUploadCommand({ ...this.params, UploadId: upload.uploadId, MultipartUpload: { Parts: parts } }));
    this.#upload = undefined;
    await this.options.journal.finished(upload);
    return { etag: out.ETag, versionId: out.VersionId };
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }

  #fail(error: unknown): void {
    this.#failure ??= { error };
    this.#body?.destroy();
  }

  async #settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  /**
   * Whether the upload was still open (undefined when there was none, or the abort failed). The
   * failure that brought us here is what the caller must see; an abort that fails leaves the
   * journal's record, from which the upload is aborted later (src/s3/upload-journal.ts).
   */
  async #abort(): Promise<boolean | undefined> {
    if (this.#upload === undefined) return undefined;
    const upload = this.#upload;
    this.#upload = undefined;
    return abortUpload(this.s3, upload, this.options.journal).catch(() => undefined);
  }
}

/** A body that takes its chunks back once copied (src/crypto/pool.ts PoolStream), to fill them again. */
interface ReleasingBody {
  release(chunk: Uint8Array): void;
}

function releasable(body: Readable): ReleasingBody | undefined {
  const candidate = body as Readable & Partial<ReleasingBody>;
  return typeof candidate.release === 'function' ? (candidate as ReleasingBody) : undefined;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
