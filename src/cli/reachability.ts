import { Redis } from 'ioredis';
import { redisEndpoint, type Config } from '../config/config.js';
import { networkCodeOf, UnreachableError } from '../errors.js';

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

/** The UnreachableError behind `err`, however deep an S3 or KMS failure wrapped it; undefined for any other error. */
export function unreachableOf(err: unknown): UnreachableError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e instanceof UnreachableError) return e;
  }
  return undefined;
}
