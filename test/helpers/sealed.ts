import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { KMSClient } from '@aws-sdk/client-kms';
import { PutObjectCommand, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { encryptUnder, generateSharedKey, putInstructionFile } from '../../scripts/seed/s3ec-writer.js';

/**
 * An S3EC object built in memory (the seeder's writer rules), so a test can store it with any
 * headers it likes, or damage it first. Carries no plaintext key: tests that need one ask KMS.
 */
export interface Sealed {
  readonly ciphertext: Buffer;
  /** User metadata as it goes on the PUT, non-ASCII values already in S3's encoding. */
  readonly metadata: Record<string, string>;
  readonly instructionFile: string | undefined;
  readonly plaintextSha256: string;
}

export interface SealOptions {
  readonly kmsKeyId: string;
  readonly format: 'v2' | 'v3';
  readonly context?: Record<string, string>;
  readonly instructionFile?: boolean;
  /** Records `x-amz-unencrypted-content-length`, which rekey then holds the body to. */
  readonly recordLength?: boolean;
}

export async function seal(kms: KMSClient, plaintext: Buffer, options: SealOptions): Promise<Sealed> {
  const shared = await generateSharedKey(kms, options.kmsKeyId, options.format, options.context);
  try {
    const encrypted = encryptUnder(shared, Readable.from([plaintext]), {
      format: options.format,
      instructionFile: options.instructionFile,
      unencryptedContentLength: options.recordLength ? plaintext.length : undefined,
    });
    const ciphertext = await buffer(encrypted.ciphertext);
    return { ciphertext, metadata: encrypted.metadata, instructionFile: encrypted.instructionFile, plaintextSha256: createHash('sha256').update(plaintext).digest('hex') };
  } finally {
    shared.plaintext.fill(0);
  }
}

const MULTIPART_FROM = 16 * 1024 * 1024;

/** Stores a sealed object (and its instruction file); `extra` adds headers, tags, storage class, lock… */
export async function putSealed(
  s3: S3Client,
  bucket: string,
  key: string,
  sealed: Pick<Sealed, 'ciphertext' | 'metadata' | 'instructionFile'>,
  extra: Omit<Partial<PutObjectCommandInput>, 'Bucket' | 'Key' | 'Body'> = {},
): Promise<void> {
  const params = { ...extra, Bucket: bucket, Key: key, Metadata: { ...extra.Metadata, ...sealed.metadata } };
  if (sealed.ciphertext.length > MULTIPART_FROM) {
    await new Upload({ client: s3, params: { ...params, Body: sealed.ciphertext }, partSize: MULTIPART_FROM, queueSize: 2 }).done();
  } else {
    await s3.send(new PutObjectCommand({ ...params, Body: sealed.ciphertext }));
  }
  if (sealed.instructionFile !== undefined) await putInstructionFile(s3, bucket, key, sealed.instructionFile);
}
