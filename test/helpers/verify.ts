import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DecryptCommand } from '@aws-sdk/client-kms';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { DataKey } from '../../src/crypto/data-key.js';
import { decryptSpecFor } from '../../src/crypto/specs.js';
import { createDecryptStream } from '../../src/crypto/streams.js';
import { kmsEncryptionContext } from '../../src/formats/index.js';
import { readEncryptedObject } from '../../src/rotate/read-envelope.js';
import type { TestStack } from './stack.js';

export interface Decrypted {
  readonly sha256: string;
  /** The KMS key (ARN) that unwrapped the data key. */
  readonly keyId: string;
  readonly format: string;
}

/** Decrypts an object the way any S3EC reader does and digests its plaintext; rejects if it cannot. */
export async function decryptObject(stack: TestStack, bucket: string, key: string): Promise<Decrypted> {
  const { envelope, snapshot } = await readEncryptedObject(stack.s3, { bucket, key });
  const out = await stack.kms.send(
    new DecryptCommand({ CiphertextBlob: envelope.encryptedDataKey, EncryptionContext: kmsEncryptionContext(envelope) }),
  );
  const body = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, IfMatch: snapshot.etag }));
  const hash = createHash('sha256');
  const plain = (body.Body as Readable).pipe(createDecryptStream(decryptSpecFor(envelope, DataKey.adopt(out.Plaintext!))));
  for await (const chunk of plain) hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), keyId: out.KeyId!, format: envelope.version };
}
