import type { Job, Queue, Worker } from 'bullmq';

export interface WatchedWorkerOptions<T> {
  /** Makes a BullMQ Worker (autorun off) that runs `process` for each job; called again to replace a wedged one. */
  readonly make: (process: (job: Job<T>, token: string | undefined) => Promise<unknown>) => Worker<T>;
  readonly process: (job: Job<T>, token: string | undefined) => Promise<unknown>;
  /** The worker's queue, on the process's own connection: where jobs are seen waiting. */
  readonly queue: Queue<T>;
  /** How often the watch looks; default 5 s. */
  readonly checkMs?: number;
  /**
   * A worker with no job in hand that has not started one while jobs waited this long is wedged;
   * default 30 s (a healthy idle worker is woken within milliseconds, at worst after BullMQ's 5 s block).
   */
  readonly stuckMs?: number;
  /** How long the close of a worker that holds no job is awaited before it is left behind (wedged); default 5 s. */
  readonly closeMs?: number;
  /** Told of each replacement, for the log. */
  readonly onReplace?: (facts: { queue: string; waiting: number; waitedMs: number }) => void;
  /** Told of an error of a worker's run loop or of the watch itself. */
  readonly onError?: (err: unknown) => void;
}

/**
 * A BullMQ Worker that is replaced when its fetching wedges. After a Redis Cluster master restarts,
 * BullMQ 6.7's blocking connection of an idle worker may never come back (taskforcesh/bullmq#4138:
 * a disconnect awaits an `end` that the cluster client never emits): the process looks healthy, its
 * other connections work, and the worker takes no job again. For a campaign that is a hang: its closing
 * verification waits forever. From outside the symptom is plain: jobs wait while this worker holds none
 * and starts none. Then the worker is closed (abandoned if its close hangs too) and a new one, with new
 * connections, takes its place. A job in hand is never touched: only an idle worker is replaced.
 */
export class WatchedWorker<T> {
  #current: Worker<T>;
  #inHand = 0;
  /** Since when jobs have been seen waiting while this worker held none and started none. */
  #waitingSince: number | undefined;
  #checking = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #replacements = 0;
  readonly #stopped: Promise<void>;
  #stop!: () => void;

  constructor(private readonly options: WatchedWorkerOptions<T>) {
    this.#current = this.#make();
    this.#stopped = new Promise((resolve) => (this.#stop = resolve));
  }

  /** How many times a wedged worker was replaced. */
  get replacements(): number {
    return this.#replacements;
  }

  /** Starts taking jobs; resolves when closed. */
  run(): Promise<void> {
    this.#start(this.#current);
    this.#timer = setInterval(() => void this.#check(), this.options.checkMs ?? 5_000);
    this.#timer.unref();
    return this.#stopped;
  }

  waitUntilReady(): Promise<unknown> {
    return this.#current.waitUntilReady();
  }

  /**
   * Stops taking jobs and waits for the ones in hand (released unfinished with `force`). A worker with
   * none in hand has nothing to finish: a close of it that outlasts `closeMs` is a wedged connection's,
   * and is not waited for, so a stopping process is never held by it.
   */
  async close(force = false): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      await this.#closeIdle(this.#current, force);
    } finally {
      this.#stop();
    }
  }

  #make(): Worker<T> {
    return this.options.make(async (job, token) => {
      this.#inHand += 1;
      this.#waitingSince = undefined;
      try {
        return await this.options.process(job, token);
      } finally {
        this.#inHand -= 1;
      }
    });
  }

  #start(worker: Worker<T>): void {
    worker.run().catch((err: unknown) => this.options.onError?.(err));
  }

  async #check(): Promise<void> {
    if (this.#closed || this.#checking) return;
    this.#checking = true;
    try {
      const waiting = this.#inHand > 0 ? 0 : await this.#waiting();
      if (waiting === 0 || this.#inHand > 0) {
        this.#waitingSince = undefined;
        return;
      }
      const now = Date.now();
      this.#waitingSince ??= now;
      const waitedMs = now - this.#waitingSince;
      if (waitedMs < (this.options.stuckMs ?? 30_000) || this.#closed) return;
      this.options.onReplace?.({ queue: this.#current.name, waiting, waitedMs });
      await this.#replace();
    } catch (err) {
      this.options.onError?.(err);
    } finally {
      this.#checking = false;
    }
  }

  /** Jobs ready to be taken (BullMQ counts prioritized ones apart); none while Redis is away. */
  async #waiting(): Promise<number> {
    const counts = await this.options.queue.getJobCounts('waiting', 'prioritized');
    return (counts.waiting ?? 0) + (counts.prioritized ?? 0);
  }

  async #replace(): Promise<void> {
    const wedged = this.#current;
    this.#current = this.#make();
    this.#waitingSince = undefined;
    this.#replacements += 1;
    await this.#closeIdle(wedged, true);
    // Closed meanwhile: close() already closed the new worker, which never started.
    if (!this.#closed) this.#start(this.#current);
  }

  /** Waits for `worker` to close, for `closeMs` at a time, and no longer once this holds no job. */
  async #closeIdle(worker: Worker<T>, force: boolean): Promise<void> {
    const closed = worker.close(force).then(
      () => true,
      (err: unknown) => {
        this.options.onError?.(err);
        return true;
      },
    );
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([closed, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.options.closeMs ?? 5_000)))]);
      clearTimeout(timer);
      if (done || this.#inHand === 0) return;
    }
  }
}
