import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { Cluster, Redis } from 'ioredis';
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
  /**
   * How long connecting may take. A command names an unreachable endpoint after 2 s; a worker, whose
   * event loop may be busy with thousands of streams on a loaded host, gives a connection 10 s before
   * it counts as a failed attempt.
   */
  readonly patience?: 'command' | 'worker';
}

/**
 * An unreachable endpoint must be named within seconds, never waited on: connecting gets 2 s. A
 * stream that stalls is cut after 60 s of silence.
 */
const requestHandler = (options: ClientOptions) => ({ connectionTimeout: options.patience === 'worker' ? 10_000 : 2_000, requestTimeout: 60_000 });

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
    requestHandler: requestHandler(options),
    ...retrySettings(options, isTransientS3Error),
  });
  client.middlewareStack.add(namingUnreachable('S3', config.s3Endpoint ?? `https://s3.${config.region}.amazonaws.com`, 'AWS_ENDPOINT_URL_S3'), NAMING_UNREACHABLE);
  return client;
}

export function makeKmsClient(config: Config, options: ClientOptions = {}): KMSClient {
  const client = new KMSClient({
    region: config.region,
    ...(config.kmsEndpoint ? { endpoint: config.kmsEndpoint } : {}),
    requestHandler: requestHandler(options),
    ...retrySettings(options, isRetryableKmsError),
  });
  client.middlewareStack.add(namingUnreachable('KMS', config.kmsEndpoint ?? `https://kms.${config.region}.amazonaws.com`, 'AWS_ENDPOINT_URL_KMS'), NAMING_UNREACHABLE);
  return client;
}

/** A connection to rekey's Redis: one server, or a Redis Cluster (`REKEY_REDIS_CLUSTER`). */
export type RedisClient = Redis | Cluster;

/**
 * While a master is down or failing over, a command for its slots meets refused connections, MOVED
 * back to it and CLUSTERDOWN, each a redirection: ioredis gives up after 16 (about 2 s), which would
 * fail the command's object. rekey waits instead, as it waits out a single Redis restart, retrying
 * every 100 ms; a master that restarts keeps its slots, so its connection is retried, not dropped.
 */
const WAIT_OUT_A_MASTER = {
  maxRedirections: Number.POSITIVE_INFINITY,
  retryDelayOnMoved: 100,
  retryDelayOnClusterDown: 100,
  retryDelayOnFailover: 100,
  clusterNodeRetryStrategy: (times: number) => Math.min(100 * times, 2_000),
} as const;

export interface RedisClientOptions {
  /**
   * For checks: connect on the first command, try each command once and never reconnect, so an
   * unreachable Redis is named at once. Default: wait out a Redis restart.
   */
  readonly failFast?: boolean;
  /** How long to wait before reconnecting, by attempt; ioredis' default otherwise. */
  readonly retryStrategy?: (times: number) => number | null;
}

/**
 * BullMQ's blocking connections need `maxRetriesPerRequest: null`; the same options suit rekey's own
 * commands, which must wait out a Redis restart rather than fail an object.
 */
export function makeRedis(config: Config, options: RedisClientOptions = {}): RedisClient {
  const failFast = options.failFast ?? false;
  const common = { maxRetriesPerRequest: failFast ? 1 : null, enableReadyCheck: true };
  if (!config.redisCluster) {
    const retry = failFast ? { lazyConnect: true, retryStrategy: () => null } : options.retryStrategy ? { retryStrategy: options.retryStrategy } : {};
    return new Redis(config.redisUrl, { ...common, ...retry });
  }
  const seed = new URL(config.redisUrl);
  return new Cluster([{ host: seed.hostname, port: Number(seed.port || 6379) }], {
    ...(failFast ? { lazyConnect: true, clusterRetryStrategy: () => null } : WAIT_OUT_A_MASTER),
    // ioredis would connect to the nodes by address, which their TLS certificates do not name
    // (ElastiCache's TLS recipe in ioredis' README).
    ...(seed.protocol === 'rediss:' ? { dnsLookup: (address, lookup) => lookup(null, address) } : {}),
    redisOptions: {
      ...common,
      ...(seed.username ? { username: decodeURIComponent(seed.username) } : {}),
      ...(seed.password ? { password: decodeURIComponent(seed.password) } : {}),
      ...(seed.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  });
}
