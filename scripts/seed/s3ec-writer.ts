import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { DataKey } from '../../src/crypto/data-key.js';
import { buildEnvelope } from '../../src/crypto/new-envelope.js';
import { encryptSpecFor } from '../../src/crypto/specs.js';
import { createEncryptStream } from '../../src/crypto/streams.js';
import {
  encodeS3MetadataValue,
  encryptionContextForNewEnvelope,
  INSTRUCTION_FILE_MARKER,
  serialiseEnvelope,
  type EncryptionContext,
} from '../../src/formats/index.js';

/**
 * Writes S3 Encryption Client objects (V2 or V3, kms+context, metadata or instruction file) for the
 * demo, the benchmarks and tests that need many objects fast. Interoperability with the real client is
 * proven separately (test/interop); this writer follows the same rules.
 */
export interface SeedObject {
  readonly bucket: string;
  readonly key: string;
  readonly format: 'v2' | 'v3';
  readonly context?: EncryptionContext;
  readonly instructionFile?: boolean;
  readonly metadata?: Record<string, string>;
  readonly contentType?: string;
}

/** A data key shared by several objects, as S3EC writers with data-key caching produce. */
export interface SharedDataKey {
  readonly plaintext: Buffer;
  readonly wrapped: Uint8Array;
  readonly context: EncryptionContext;
}

export async function generateSharedKey(kms: KMSClient, kmsKeyId: string, format: 'v2' | 'v3', context: EncryptionContext = {}): Promise<SharedDataKey> {
  const full = encryptionContextForNewEnvelope(format, context);
  const out = await kms.send(new GenerateDataKeyCommand({ KeyId: kmsKeyId, KeySpec: 'AES_256', EncryptionContext: full }));
  return { plaintext: Buffer.from(out.Plaintext!), wrapped: out.CiphertextBlob!, context: full };
}

export interface EncryptOptions {
  readonly format: 'v2' | 'v3';
  readonly instructionFile?: boolean;
  /** Recorded as `x-amz-unencrypted-content-length`. */
  readonly unencryptedContentLength?: number;
  /** User metadata to store beside the envelope's. */
  readonly metadata?: Record<string, string>;
}

/** A body encrypted under a shared data key, and where its envelope goes. */
export interface EncryptedObject {
  readonly ciphertext: Readable;
  /** User metadata as it goes on the PUT, non-ASCII values already in S3's encoding. */
  readonly metadata: Record<string, string>;
  readonly instructionFile: string | undefined;
}

/** The writer's rules for one object: its envelope, its encrypting stream, its metadata and instruction file. */
export function encryptUnder(key: SharedDataKey, plaintext: Readable, options: EncryptOptions): EncryptedObject {
  const envelope = buildEnvelope({
    version: options.format,
    encryptedDataKey: key.wrapped,
    encryptionContext: key.context,
    dataKey: DataKey.adopt(Buffer.from(key.plaintext)),
    location: options.instructionFile ? 'instruction-file' : 'object-metadata',
    ...(options.unencryptedContentLength !== undefined ? { unencryptedContentLength: options.unencryptedContentLength } : {}),
  });
  const ciphertext = plaintext.pipe(createEncryptStream(encryptSpecFor(envelope, DataKey.adopt(Buffer.from(key.plaintext)))));
  const serialised = serialiseEnvelope(envelope);
  const metadata = Object.fromEntries(
    Object.entries({ ...options.metadata, ...serialised.objectMetadata }).map(([k, v]) => [k, encodeS3MetadataValue(v)]),
  );
  return { ciphertext, metadata, instructionFile: serialised.instructionFile };
}

/** Stores `<key>.instruction`, marked as an instruction file. */
export async function putInstructionFile(s3: S3Client, bucket: string, key: string, body: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${key}.instruction`, Body: body, Metadata: { [INSTRUCTION_FILE_MARKER]: '' } }));
}

export async function putSeedObject(
  s3: S3Client,
  object: SeedObject,
  body: Buffer | (() => Readable),
  key: SharedDataKey,
  options: { size?: number } = {},
): Promise<void> {
  const source = typeof body === 'function' ? body() : Readable.from([body]);
  const { ciphertext, metadata, instructionFile } = encryptUnder(key, source, { format: object.format, instructionFile: object.instructionFile, metadata: object.metadata });
  const params = { Bucket: object.bucket, Key: object.key, Metadata: metadata, ContentType: object.contentType };
  if (typeof body === 'function' || (options.size ?? body.length) > 16 * 1024 * 1024) {
    await new Upload({ client: s3, params: { ...params, Body: ciphertext }, partSize: 16 * 1024 * 1024, queueSize: 2 }).done();
  } else {
    await s3.send(new PutObjectCommand({ ...params, Body: await buffer(ciphertext) }));
  }
  if (instructionFile !== undefined) await putInstructionFile(s3, object.bucket, object.key, instructionFile);
}
