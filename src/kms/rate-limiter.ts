import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';

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

/**
 * GCRA, the token bucket kept as one number: the theoretical arrival time (TAT) of the next call, in
 * microseconds of Redis' clock, so hosts with skewed clocks still share one schedule. Every call
 * reserves the next slot and learns how long to wait for it, so waiting needs no polling and callers
 * are served in order. A slot reserved by a caller that then dies is lost, which only errs on the
 * slow side. The key expires once its TAT has passed, when it would no longer matter.
 * `%.0f` because Lua 5.1's tostring rounds numbers this large to 14 digits; `ceil` so rounding
 * errs on the slow side.
 */
const RESERVE_LUA = `
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local nextTat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', math.ceil(nextTat)), 'PX', math.ceil((nextTat - now) / 1000) + 1000)
return wait
`;

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
    options.redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: RESERVE_LUA });
    this.redis = options.redis as ReservingRedis;
  }

  async acquire(): Promise<void> {
    const waitMicros = await this.redis[COMMAND](this.key, this.intervalMicros, this.toleranceMicros);
    if (waitMicros > 0) await sleep(Math.ceil(waitMicros / 1000));
  }
}
