/**
 * What a worker keeps per campaign it serves (a rotator and its KmsBatcher, whose cache holds up to
 * 10,000 unwrapped keys), dropped once the campaign is finished. A long-lived worker serves a new
 * campaign for every run of a schedule; without eviction it would keep each run's batcher for ever.
 */
export interface RotatorCacheOptions {
  /** Whether a campaign is finished: its entry is then dropped. */
  readonly isFinished: (campaignId: string) => Promise<boolean>;
  /** Told when a sweep could not read a campaign's state; its entry stays until the next sweep. */
  readonly onSweepError?: (err: unknown) => void;
}

export class RotatorCache<T> {
  private readonly entries = new Map<string, T>();
  private sweeping: Promise<void> | undefined;
  private sweepAgain = false;

  constructor(private readonly options: RotatorCacheOptions) {}

  /**
   * The entry of a campaign, made on first use. A new campaign is when the set of campaigns grows, so
   * that is when the finished ones are swept: the cache then holds the campaigns still running and the
   * new one.
   */
  get(campaignId: string, make: () => T): T {
    const cached = this.entries.get(campaignId);
    if (cached !== undefined) return cached;
    const entry = make();
    this.entries.set(campaignId, entry);
    void this.sweep();
    return entry;
  }

  /** Drops a campaign's entry at once, e.g. when this worker saw it end. */
  delete(campaignId: string): void {
    this.entries.delete(campaignId);
  }

  /** The campaigns with an entry. */
  campaigns(): string[] {
    return [...this.entries.keys()];
  }

  /** Resolves once no sweep is running: a closing worker waits for it before its Redis connection goes. */
  async idle(): Promise<void> {
    await this.sweeping;
  }

  /**
   * Drops the entries of finished campaigns. One sweep at a time; one asked for during a sweep runs
   * after it, so a campaign added meanwhile is looked at too.
   */
  sweep(): Promise<void> {
    if (this.sweeping) {
      this.sweepAgain = true;
      return this.sweeping;
    }
    this.sweeping = (async () => {
      do {
        this.sweepAgain = false;
        await this.sweepOnce();
      } while (this.sweepAgain);
    })().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    await Promise.all(
      this.campaigns().map(async (id) => {
        try {
          if (await this.options.isFinished(id)) this.entries.delete(id);
        } catch (err) {
          this.options.onSweepError?.(err);
        }
      }),
    );
  }
}
