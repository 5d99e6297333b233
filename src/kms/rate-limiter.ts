import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import { defineLuaCommands, loadLuaCommands } from '../redis/lua-commands.js';

/** Anything that paces KMS calls; `acquire` resolves when the caller may make one call. */
export interface RateLimiter {
  acquire(): Promise<void>;
}

export interface RedisRateLimiterOptions {
  /** A connection that waits out a Redis restart (`makeRedis`: `maxRetriesPerRequest: null`). */
  readonly redis: Redis | Cluster;
  readonly prefix: string;
  readonly campaign: string;
  /** Calls per second for the whole campaign, summed over every worker process. */
  readonly ratePerSecond: number;
  /**
   * Calls allowed back to back after a quiet spell. Over any window of t seconds the campaign makes
   * at most ratePerSecond·t + burst calls. Default: a tenth of a second's worth, at least 1.
   */
  readonly burst?: number;
}

const COMMAND = 'rekeyKmsRateReserve';

/** The GCRA reservation: commands/kmsRateReserve-1.lua says how it paces calls. */
const COMMANDS = loadLuaCommands(new URL('./commands/', import.meta.url), 'rekey');

type ReservingRedis = (Redis | Cluster) & {
  [COMMAND](key: string, intervalMicros: number, toleranceMicros: number): Promise<number>;
};

export function kmsRateKey(prefix: string, campaign: string): string {
  return `${prefix}:kms-rate:${campaign}`;
}

/**
 * One rate limit shared by all workers of a campaign through Redis. ioredis re-sends the script by
 * EVAL on a new connection, so a restarted Redis (empty script cache) only costs the reconnect; the
 * schedule restarts empty, which allows one burst.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly key: string;
  private readonly redis: ReservingRedis;
  private readonly intervalMicros: number;
  private readonly toleranceMicros: number;

  constructor(options: RedisRateLimiterOptions) {
    const rate = options.ratePerSecond;
    /* Precondition: a positive, finite rate. */
    if (!(rate > 0 && Number.isFinite(rate))) throw new RangeError(`KMS rate must be a positive number, got ${rate}`);
    const burst = options.burst ?? Math.max(1, Math.ceil(rate / 10));
    /* Precondition: a burst of at least one call. */
    if (!(burst >= 1 && Number.isInteger(burst))) throw new RangeError(`KMS burst must be an integer ≥ 1, got ${burst}`);
    this.key = kmsRateKey(options.prefix, options.campaign);
    this.intervalMicros = 1_000_000 / rate;
    this.toleranceMicros = (burst - 1) * this.intervalMicros;
    defineLuaCommands(options.redis, COMMANDS);
    this.redis = options.redis as ReservingRedis;
  }

  async acquire(): Promise<void> {
    const waitMicros = await this.redis[COMMAND](this.key, this.intervalMicros, this.toleranceMicros);
    if (waitMicros > 0) await sleep(Math.ceil(waitMicros / 1000));
  }
}
