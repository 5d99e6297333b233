import type { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { s3Failure } from './errors.js';
import { listEntries } from './listing.js';

/**
 * Plain objects rekey reads and writes for itself (campaign reports; the manifests and inventories it
 * plans from): written whole, replaced whole, listed by prefix. Not the objects being rotated, which
 * only go through the conditional writes.
 */

/** Puts (or replaces) one object; the same key written twice holds the last body. */
export async function putPlainObject(s3: S3Client, at: { bucket: string; key: string }, body: string, contentType: string): Promise<void> {
  try {
    await s3.send(new PutObjectCommand({ Bucket: at.bucket, Key: at.key, Body: body, ContentType: contentType }));
  } catch (err) {
    throw s3Failure(err, `PUT s3://${at.bucket}/${at.key}`);
  }
}

/** Puts (or replaces) one object streamed from `body`, of any size (a multipart upload past one part). */
export async function putPlainStream(s3: S3Client, at: { bucket: string; key: string }, body: Readable, contentType: string): Promise<void> {
  try {
    await new Upload({ client: s3, params: { Bucket: at.bucket, Key: at.key, Body: body, ContentType: contentType } }).done();
  } catch (err) {
    throw s3Failure(err, `PUT s3://${at.bucket}/${at.key}`);
  }
}

/** Every key under a prefix, in S3's order, page by page. */
export async function* listKeys(s3: S3Client, bucket: string, prefix: string): AsyncGenerator<string> {
  try {
    for await (const page of listEntries(s3, { bucket, prefix }, undefined, false)) for (const entry of page.entries) yield entry.key;
  } catch (err) {
    throw s3Failure(err, `LIST s3://${bucket}/${prefix}`);
  }
}

/** An object's body as a stream; undefined when it does not exist. */
export async function openPlainObject(s3: S3Client, at: { bucket: string; key: string }): Promise<Readable | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: at.bucket, Key: at.key }));
    return out.Body as Readable;
  } catch (err) {
    const failure = s3Failure(err, `GET s3://${at.bucket}/${at.key}`);
    if (failure.reason === 'gone') return undefined;
    throw failure;
  }
}
