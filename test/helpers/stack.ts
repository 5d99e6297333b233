import { randomBytes } from 'node:crypto';
import { CreateKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { CreateBucketCommand, PutBucketVersioningCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeKmsClient, makeRedis, makeS3Client } from '../../src/config/clients.js';
import { loadConfig, type Config } from '../../src/config/config.js';

/**
 * Each test gets its own bucket, KMS keys and Redis key prefix, so test files running in parallel
 * against the one local stack never see each other's data.
 */
export function uniqueName(kind: string): string {
  return `rekey-${kind}-${randomBytes(5).toString('hex')}`;
}

export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig(), redisPrefix: uniqueName('t'), logLevel: 'silent', ...overrides };
}

export interface TestStack {
  readonly config: Config;
  readonly s3: S3Client;
  readonly kms: KMSClient;
  readonly redis: ReturnType<typeof makeRedis>;
  close(): Promise<void>;
}

/**
 * moto ignores CopySourceIfMatch and If-Match on CompleteMultipartUpload; tests of conditional writes
 * use versitygw, a second real S3 implementation of the stack that enforces them.
 */
export function strictS3(): Partial<Config> {
  const endpoint = process.env.REKEY_STRICT_S3_ENDPOINT;
  if (!endpoint) throw new Error('REKEY_STRICT_S3_ENDPOINT is not set: run the tests through npm test');
  return { s3Endpoint: endpoint, s3ForcePathStyle: true };
}

/** The stack's 3-master Redis Cluster, which stands in for ElastiCache/MemoryDB in cluster mode. */
export function redisCluster(): Partial<Config> {
  const url = process.env.REKEY_REDIS_CLUSTER_URL;
  if (!url) throw new Error('REKEY_REDIS_CLUSTER_URL is not set: run the tests through npm test');
  return { redisUrl: url, redisCluster: true };
}

export function openStack(overrides: Partial<Config> = {}): TestStack {
  const config = testConfig(overrides);
  const s3 = makeS3Client(config);
  const kms = makeKmsClient(config);
  const redis = makeRedis(config);
  return {
    config,
    s3,
    kms,
    redis,
    async close() {
      s3.destroy();
      kms.destroy();
      await redis.quit();
    },
  };
}

export async function freshBucket(s3: S3Client, opts: { versioned?: boolean } = {}): Promise<string> {
  const bucket = uniqueName('b');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  if (opts.versioned) {
    await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  }
  return bucket;
}

export interface TestKey {
  readonly keyId: string;
  readonly arn: string;
}

export async function freshKmsKey(kms: KMSClient, description = 'rekey test key'): Promise<TestKey> {
  const out = await kms.send(new CreateKeyCommand({ Description: description }));
  const meta = out.KeyMetadata;
  if (!meta?.KeyId || !meta.Arn) throw new Error('CreateKey returned no key id');
  return { keyId: meta.KeyId, arn: meta.Arn };
}

/** A stack and the two KMS keys of a rotation: objects start under `oldKey`, campaigns move them to `newKey`. */
export interface StackWithKeys {
  readonly stack: TestStack;
  readonly oldKey: TestKey;
  readonly newKey: TestKey;
}

export async function openStackWithKeys(overrides: Partial<Config> = {}): Promise<StackWithKeys> {
  const stack = openStack(overrides);
  try {
    return { stack, oldKey: await freshKmsKey(stack.kms, 'old'), newKey: await freshKmsKey(stack.kms, 'new') };
  } catch (err) {
    await stack.close();
    throw err;
  }
}

/** A KMS implementation of the local stack; the KMS tests run against each one. */
export interface KmsUnderTest {
  readonly name: 'moto' | 'local-kms';
  readonly endpoint: string;
}

/**
 * moto's KMS (the default endpoint) and local-kms, a second real implementation that, unlike moto,
 * refuses disabled keys. Both must pass the KMS part of the suite.
 */
export function kmsEndpoints(): readonly KmsUnderTest[] {
  const moto = loadConfig().kmsEndpoint;
  const localKms = process.env.REKEY_LOCAL_KMS_ENDPOINT;
  if (!moto || !localKms) throw new Error('AWS_ENDPOINT_URL_KMS or REKEY_LOCAL_KMS_ENDPOINT is not set: run the tests through npm test');
  return [
    { name: 'moto', endpoint: moto },
    { name: 'local-kms', endpoint: localKms },
  ];
}

export function localKms(): KmsUnderTest {
  return kmsEndpoints().find((k) => k.name === 'local-kms')!;
}
