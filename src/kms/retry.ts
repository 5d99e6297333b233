import { setTimeout as sleep } from 'node:timers/promises';
import { currentBudget } from '../retry/budget.js';
import { KmsError } from './errors.js';

export interface RetryOptions {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** Upper bound of the first backoff, in milliseconds; it doubles per attempt up to `capMs`. */
  readonly baseMs: number;
  readonly capMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 8, baseMs: 50, capMs: 5_000 };

export interface RetryEvent {
  readonly error: KmsError;
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  readonly delayMs: number;
}

/**
 * "Full jitter" (uniform in [0, min(cap, base·2^(n-1))]): with many workers throttled at the same
 * moment, spreading the retries over the whole window is what lets the shared quota recover.
 */
function fullJitterDelay(attempt: number, options: RetryOptions): number {
  return Math.random() * Math.min(options.capMs, options.baseMs * 2 ** (attempt - 1));
}

/**
 * Runs `attempt` until it succeeds, throws a non-retryable error, or the attempts are used up; each
 * retry also comes out of the current object's budget, shared with its S3 requests.
 */
export async function withRetry<T>(
  attempt: () => Promise<T>,
  options: RetryOptions,
  onRetry?: (event: RetryEvent) => void,
): Promise<T> {
  /* Precondition: at least one attempt. */
  if (!(options.attempts >= 1)) throw new RangeError(`retry attempts must be at least 1, got ${options.attempts}`);
  for (let n = 1; ; n++) {
    try {
      const result = await attempt();
      currentBudget().recordSuccess();
      return result;
    } catch (err) {
      if (!(err instanceof KmsError) || !err.retryable || n >= options.attempts) throw err;
      const delayMs = fullJitterDelay(n, options);
      if (!currentBudget().allow(delayMs, err)) throw err;
      onRetry?.({ error: err, attempt: n, delayMs });
      await sleep(delayMs);
    }
  }
}
