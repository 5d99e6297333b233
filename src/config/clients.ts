import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { Redis, type RedisOptions } from 'ioredis';
import { networkCodeOf, UnreachableError } from '../errors.js';
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
 * An unreachable endpoint must be named within seconds, never waited on: connecting gets 2 s. A
 * stream that stalls is cut after 60 s of silence.
 */
const REQUEST_HANDLER = { connectionTimeout: 2_000, requestTimeout: 60_000 };

function retrySettings(options: ClientOptions, transient: (error: unknown) => boolean) {
  return options.retries === 'none' ? { maxAttempts: 1 } : { maxAttempts: OBJECT_BUDGET.retries + 1, retryStrategy: budgetedRetryStrategy(transient) };
}

/**
 * A request that got no answer after its retries becomes an UnreachableError naming the endpoint,
 * whoever sent it: the CLI prints it as it is, rotation classifies it by its socket error.
 */
function namingUnreachable(service: 'S3' | 'KMS', endpoint: string, variable: string) {
  const hint = `check ${variable} (or AWS_ENDPOINT_URL), AWS_REGION and the network`;
  return <A, R>(next: (args: A) => Promise<R>) =>
    async (args: A): Promise<R> => {
      try {
        return await next(args);
      } catch (err) {
        const code = networkCodeOf(err);
        throw code === undefined ? err : new UnreachableError(service, endpoint, code, hint, { cause: err });
      }
    };
}

const NAMING_UNREACHABLE = { step: 'initialize', name: 'rekeyNameUnreachable' } as const;

export function makeS3Client(config: Config, options: ClientOptions = {}): S3Client {
  const client = new S3Client({
    region: config.region,
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
    forcePathStyle: config.s3ForcePathStyle,
    requestHandler: REQUEST_HANDLER,
    ...retrySettings(options, isTransientS3Error),
  });
  client.middlewareStack.add(namingUnreachable('S3', config.s3Endpoint ?? `https://s3.${config.region}.amazonaws.com`, 'AWS_ENDPOINT_URL_S3'), NAMING_UNREACHABLE);
  return client;
}

export function makeKmsClient(config: Config, options: ClientOptions = {}): KMSClient {
  const client = new KMSClient({
    region: config.region,
    ...(config.kmsEndpoint ? { endpoint: config.kmsEndpoint } : {}),
    requestHandler: REQUEST_HANDLER,
    ...retrySettings(options, isRetryableKmsError),
  });
  client.middlewareStack.add(namingUnreachable('KMS', config.kmsEndpoint ?? `https://kms.${config.region}.amazonaws.com`, 'AWS_ENDPOINT_URL_KMS'), NAMING_UNREACHABLE);
  return client;
}

/**
 * BullMQ's blocking connections need `maxRetriesPerRequest: null`; the same options suit rekey's own
 * commands, which must wait out a Redis restart rather than fail an object.
 */
export function makeRedis(config: Config, overrides: RedisOptions = {}): Redis {
  return new Redis(config.redisUrl, { maxRetriesPerRequest: null, enableReadyCheck: true, ...overrides });
}
