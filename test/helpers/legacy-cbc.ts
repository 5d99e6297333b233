import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';

/** A legacy AES/CBC object with the `kms` wrap, as the V1-era S3 Encryption Clients wrote it. */
export interface LegacyCbc {
  readonly ciphertext: Buffer;
  readonly metadata: Record<string, string>;
  readonly plaintextSha256: string;
}

/** Seals `plaintext` with AES-256-CBC under a fresh KMS data key; no plaintext key is kept. */
export async function sealLegacyCbc(kms: KMSClient, kmsKeyId: string, plaintext: Buffer, options: { recordLength?: boolean } = {}): Promise<LegacyCbc> {
  const matdesc = { kms_cmk_id: kmsKeyId };
  const key = await kms.send(new GenerateDataKeyCommand({ KeyId: kmsKeyId, KeySpec: 'AES_256', EncryptionContext: matdesc }));
  const iv = randomBytes(16);
  try {
    const cipher = createCipheriv('aes-256-cbc', key.Plaintext!, iv);
    return {
      ciphertext: Buffer.concat([cipher.update(plaintext), cipher.final()]),
      metadata: {
        'x-amz-key-v2': Buffer.from(key.CiphertextBlob!).toString('base64'),
        'x-amz-iv': iv.toString('base64'),
        'x-amz-matdesc': JSON.stringify(matdesc),
        'x-amz-wrap-alg': 'kms',
        'x-amz-cek-alg': 'AES/CBC/PKCS5Padding',
        ...(options.recordLength ? { 'x-amz-unencrypted-content-length': String(plaintext.length) } : {}),
      },
      plaintextSha256: createHash('sha256').update(plaintext).digest('hex'),
    };
  } finally {
    key.Plaintext?.fill(0);
  }
}
