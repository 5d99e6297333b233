import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { Cluster, Redis } from 'ioredis';
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
}

/**
 * BullMQ's blocking connections need `maxRetriesPerRequest: null`; the same options suit rekey's own
 * commands, which must wait out a Redis restart rather than fail an object.
 */
export function makeRedis(config: Config, options: RedisClientOptions = {}): RedisClient {
  const failFast = options.failFast ?? false;
  const common = { maxRetriesPerRequest: failFast ? 1 : null, enableReadyCheck: true };
  if (!config.redisCluster) {
    return new Redis(config.redisUrl, { ...common, ...(failFast ? { lazyConnect: true, retryStrategy: () => null } : {}) });
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
