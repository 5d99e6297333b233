import { Redis } from 'ioredis';
import { redisEndpoint, type Config } from '../config/config.js';
import { KmsError } from '../kms/errors.js';
import { networkCodeOf, RekeyError, UnreachableError } from '../errors.js';

/** Long enough for a TLS handshake across regions, short enough that the CLI answers within 10 s. */
const REDIS_CONNECT_TIMEOUT_MS = 5_000;

/**
 * One connection attempt and a PING, before a command that needs Redis: without it, ioredis queues
 * the command and reconnects forever. Throws an UnreachableError naming the endpoint.
 */
export async function requireRedis(config: Config): Promise<void> {
  const probe = new Redis(config.redisUrl, {
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let failure: Error | undefined;
  probe.on('error', (err: Error) => {
    failure ??= err;
  });
  try {
    await probe.connect();
    await probe.ping();
  } catch (err) {
    const detail = networkCodeOf(failure ?? err) ?? (failure ?? (err as Error)).message;
    throw new UnreachableError('Redis', redisEndpoint(config), detail, 'start it (scripts/stack.sh up for the local stack), or set REDIS_URL');
  } finally {
    probe.disconnect();
  }
}

/**
 * An S3 or KMS request that got no answer after its retries, as the one line the CLI prints: which
 * endpoint, and what to do. Undefined for any other error.
 */
export function unreachableOf(err: unknown, config: Config): UnreachableError | undefined {
  const code = networkCodeOf(err);
  if (code === undefined) return undefined;
  if (err instanceof KmsError) {
    return new UnreachableError('KMS', config.kmsEndpoint ?? `kms.${config.region}.amazonaws.com`, code, 'check AWS_ENDPOINT_URL_KMS (or AWS_ENDPOINT_URL), AWS_REGION and the network');
  }
  if (err instanceof RekeyError) {
    return new UnreachableError('S3', config.s3Endpoint ?? `s3.${config.region}.amazonaws.com`, code, 'check AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_REGION and the network');
  }
  return undefined;
}
