import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { Redis, type RedisOptions } from 'ioredis';
import { isRetryableKmsError } from '../kms/errors.js';
import { budgetedRetryStrategy, OBJECT_BUDGET } from '../retry/budget.js';
import { isTransientS3Error } from '../s3/errors.js';
import type { Config } from './config.js';

export interface ClientOptions {
  /**
   * `budgeted` (default): the SDK retries what rekey's one classification calls transient, each retry
   * drawn from the current object's budget (src/retry/budget.ts). `none`: one attempt per request,
   * for callers that retry themselves (the KMS batcher, paced by the shared rate limit) or must
   * answer at once (doctor).
   */
  readonly retries?: 'budgeted' | 'none';
}

/**
 * An unreachable endpoint must be named within seconds, never waited on: connecting gets 3 s. A
 * stream that stalls is cut after 60 s of silence.
 */
const REQUEST_HANDLER = { connectionTimeout: 3_000, requestTimeout: 60_000 };

function retrySettings(options: ClientOptions, transient: (error: unknown) => boolean) {
  return options.retries === 'none' ? { maxAttempts: 1 } : { maxAttempts: OBJECT_BUDGET.retries + 1, retryStrategy: budgetedRetryStrategy(transient) };
}

export function makeS3Client(config: Config, options: ClientOptions = {}): S3Client {
  return new S3Client({
    region: config.region,
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
    forcePathStyle: config.s3ForcePathStyle,
    requestHandler: REQUEST_HANDLER,
    ...retrySettings(options, isTransientS3Error),
  });
}

export function makeKmsClient(config: Config, options: ClientOptions = {}): KMSClient {
  return new KMSClient({
    region: config.region,
    ...(config.kmsEndpoint ? { endpoint: config.kmsEndpoint } : {}),
    requestHandler: REQUEST_HANDLER,
    ...retrySettings(options, isRetryableKmsError),
  });
}

/**
 * BullMQ's blocking connections need `maxRetriesPerRequest: null`; the same options suit rekey's own
 * commands, which must wait out a Redis restart rather than fail an object.
 */
export function makeRedis(config: Config, overrides: RedisOptions = {}): Redis {
  return new Redis(config.redisUrl, { maxRetriesPerRequest: null, enableReadyCheck: true, ...overrides });
}
