import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * One budget of retries and time for everything done for one object: the SDK's retries of S3
 * requests and the KMS batcher's retries draw from it, so attempts never multiply across layers.
 * Outside an object (the CLI, the planner) each request gets a budget of its own.
 */
export interface RetryBudgetOptions {
  /** Retries in all, beyond each request's first attempt, before any request succeeded. */
  readonly retries: number;
  /**
   * One more retry per this many requests that succeeded: a large object's thousands of part uploads
   * earn retries in proportion, while a service that keeps failing earns none.
   */
  readonly earnEvery: number;
  /**
   * No retry starts that would wait past this many milliseconds from the failure that began the
   * current run of failures (a success ends a run): an object that streams for an hour may still
   * retry a failure in its last minute.
   */
  readonly timeMs: number;
  /** Upper bound of the first backoff; it doubles per retry of the same request up to `capMs`. */
  readonly baseMs: number;
  readonly capMs: number;
}

/**
 * Worst case per object (README, retries): its requests once each plus 8 retries and one per 4 that
 * succeeded, no retry starting 60 s after the failure that began a run of failures; each wait at most 5 s.
 */
export const OBJECT_BUDGET: RetryBudgetOptions = { retries: 8, earnEvery: 4, timeMs: 60_000, baseMs: 100, capMs: 5_000 };

/** A request outside any object: the CLI must name an unreachable service within 10 s. */
export const REQUEST_BUDGET: RetryBudgetOptions = { retries: 2, earnEvery: Number.POSITIVE_INFINITY, timeMs: 6_000, baseMs: 100, capMs: 2_000 };

export class RetryBudget {
  private used = 0;
  private succeeded = 0;
  /** When the current run of failures began; undefined while the last request succeeded. */
  private failingSince: number | undefined;
  /** The errors whose retry was refused for want of budget: each is final for its object. */
  private readonly refused = new Set<unknown>();

  constructor(readonly options: RetryBudgetOptions = OBJECT_BUDGET) {}

  get retriesUsed(): number {
    return this.used;
  }

  /**
   * The wait before retry number `attempt` (from 1) of one request, taken from the budget; undefined
   * when the budget has no retry or no time left for it. "Full jitter" (uniform in
   * [0, min(cap, base·2^(n-1))]) spreads retries of many workers throttled at once.
   */
  take(attempt: number, error: unknown): number | undefined {
    const delayMs = Math.random() * Math.min(this.options.capMs, this.options.baseMs * 2 ** (attempt - 1));
    return this.allow(delayMs, error) ? delayMs : undefined;
  }

  /** Counts one retry of `error` that waits `delayMs` first; false when there is none left for it. */
  allow(delayMs: number, error: unknown): boolean {
    const now = Date.now();
    this.failingSince ??= now;
    const allowed = this.options.retries + Math.floor(this.succeeded / this.options.earnEvery);
    if (this.used >= allowed || now + delayMs > this.failingSince + this.options.timeMs) {
      this.refused.add(error);
      return false;
    }
    this.used += 1;
    return true;
  }

  /** A request of the object succeeded: it ends a run of failures and earns part of a retry. */
  recordSuccess(): void {
    this.succeeded += 1;
    this.failingSince = undefined;
  }

  /** Whether `err`, or an error it wraps, is one this budget refused to retry. */
  refusedRetryOf(err: unknown): boolean {
    for (let e = err, depth = 0; e !== undefined && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
      if (this.refused.has(e)) return true;
    }
    return false;
  }
}

const current = new AsyncLocalStorage<RetryBudget>();

/** Runs `fn` with `budget` as the budget of every S3 and KMS request it makes. */
export function withBudget<T>(budget: RetryBudget, fn: () => Promise<T>): Promise<T> {
  return current.run(budget, fn);
}

/** The budget of the object being worked on; a fresh one-request budget outside any. */
export function currentBudget(): RetryBudget {
  return current.getStore() ?? new RetryBudget(REQUEST_BUDGET);
}

/**
 * Whether `err` is a transient failure whose retries the object's budget ran out for: final then. A
 * transient failure no request retry could cure (an upload aborted under the worker) is not.
 */
export function outOfBudget(err: unknown): boolean {
  return current.getStore()?.refusedRetryOf(err) === true;
}

/**
 * An AWS SDK retry strategy (RetryStrategyV2) that retries only what `retryable` accepts and draws
 * every retry from the current budget. Set on a client with one attempt per budget retry, it makes
 * the SDK's retries count in the object's budget.
 */
export function budgetedRetryStrategy(retryable: (error: unknown) => boolean) {
  interface Token {
    readonly budget: RetryBudget;
    readonly count: number;
    readonly delay: number;
    getRetryCount(): number;
    getRetryDelay(): number;
  }
  const token = (budget: RetryBudget, count: number, delay: number): Token => ({
    budget,
    count,
    delay,
    getRetryCount: () => count,
    getRetryDelay: () => delay,
  });
  return {
    async acquireInitialRetryToken(): Promise<Token> {
      return token(currentBudget(), 0, 0);
    },
    async refreshRetryTokenForRetry(previous: Token, info: { error?: unknown }): Promise<Token> {
      const delay = retryable(info.error) ? previous.budget.take(previous.count + 1, info.error) : undefined;
      if (delay === undefined) throw info.error;
      return token(previous.budget, previous.count + 1, delay);
    },
    recordSuccess(token: Token): void {
      token.budget.recordSuccess();
    },
  };
}
