import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';

export interface ClientOptions {
  /** SDK attempts per request (the SDK's own retry with backoff); rekey adds its own retry for KMS batches. */
  readonly maxAttempts?: number;
}

export function makeS3Client(config: Config, options: ClientOptions = {}): S3Client {
  return new S3Client({
    region: config.region,
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
    forcePathStyle: config.s3ForcePathStyle,
    maxAttempts: options.maxAttempts ?? 5,
  });
}

export function makeKmsClient(config: Config, options: ClientOptions = {}): KMSClient {
  return new KMSClient({
    region: config.region,
    ...(config.kmsEndpoint ? { endpoint: config.kmsEndpoint } : {}),
    maxAttempts: options.maxAttempts ?? 3,
  });
}

/**
 * BullMQ's blocking connections need `maxRetriesPerRequest: null`; the same options suit rekey's own
 * commands, which must wait out a Redis restart rather than fail an object.
 */
export function makeRedis(config: Config, overrides: RedisOptions = {}): Redis {
  return new Redis(config.redisUrl, { maxRetriesPerRequest: null, enableReadyCheck: true, ...overrides });
}
