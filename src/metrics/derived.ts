/**
 * Values that a provider cannot report as they are but that follow from two of its snapshots in a row:
 * thread-pool utilisation and a campaign's time left. Time is in seconds from a monotonic clock.
 */
export type Clock = () => number;

export const monotonicSeconds: Clock = () => performance.now() / 1000;

/**
 * Runs `fn` at most once at a time: every gauge fed by one provider asks for a snapshot while a scrape is
 * collected, and they must all see the same one (and a derived value must advance once per scrape).
 */
export function shareInFlight<T>(fn: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= fn().finally(() => {
      pending = undefined;
    });
    return pending;
  };
}

export interface PoolBusy {
  readonly threads: number;
  /** Busy time summed over all threads since the pool started; it only grows. */
  readonly busySeconds: number;
}

/**
 * Busy time over the capacity the pool had (threads × wall time) since the previous sample, so 1 means every
 * thread was busy the whole interval whatever the pool's size.
 */
export class UtilizationMeter {
  private last: { readonly at: number; readonly busySeconds: number } | undefined;
  private ratio = 0;

  constructor(private readonly now: Clock) {}

  sample(pool: PoolBusy): number {
    const at = this.now();
    const last = this.last;
    // Two scrapes in the same instant say nothing new: keep the ratio rather than divide by zero.
    if (last && at > last.at) {
      const capacity = (at - last.at) * pool.threads;
      this.ratio = capacity > 0 ? clamp((pool.busySeconds - last.busySeconds) / capacity, 0, 1) : 0;
    }
    this.last = { at, busySeconds: pool.busySeconds };
    return this.ratio;
  }
}

interface Progress {
  readonly at: number;
  readonly done: number;
}

/**
 * Time left at the pace of the last `windowSeconds`, not of the whole run: a campaign that slowed down
 * (throttling, bigger objects) or paused is not promised its early pace. No pace, no estimate.
 */
export class EtaEstimator {
  private readonly history = new Map<string, Progress[]>();

  constructor(
    private readonly now: Clock,
    private readonly windowSeconds: number,
  ) {}

  estimate(campaign: string, planned: number, done: number): number | undefined {
    if (done >= planned && planned > 0) return 0;
    const at = this.now();
    const samples = this.history.get(campaign) ?? [];
    samples.push({ at, done });
    while (samples.length > 2 && samples[1]!.at <= at - this.windowSeconds) samples.shift();
    this.history.set(campaign, samples);
    const first = samples[0]!;
    const pace = at > first.at ? (done - first.done) / (at - first.at) : 0;
    return pace > 0 ? (planned - done) / pace : undefined;
  }

  /** Campaigns the provider no longer reports are finished or gone; their history would only leak memory. */
  retain(campaigns: ReadonlySet<string>): void {
    for (const campaign of this.history.keys()) {
      if (!campaigns.has(campaign)) this.history.delete(campaign);
    }
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
