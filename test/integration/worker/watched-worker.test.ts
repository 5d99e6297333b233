import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { connectionOf, queuePrefix } from '../../../src/campaign/queue.js';
import { WatchedWorker, type WatchedWorkerOptions } from '../../../src/worker/watched-worker.js';
import { openStack, uniqueName, type TestStack } from '../../helpers/stack.js';

/** Timings of the watch, shortened: it looks every 100 ms and replaces after 1.5 s of waiting jobs. */
const FAST = { checkMs: 100, stuckMs: 1_500, closeMs: 500 } as const;

/**
 * A Redis that accepts connections and never answers: a worker on it takes no job, holds none, and its
 * close hangs too, as a worker whose blocking connection wedged after a cluster master restarted.
 */
async function silentRedis(): Promise<{ connection: ConnectionOptions; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    // No reconnection once the test ends it: the abandoned worker must not keep the process alive.
    connection: { host: '127.0.0.1', port, maxRetriesPerRequest: null, retryStrategy: () => null },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('a queue worker that wedges is replaced (src/worker/watched-worker.ts)', () => {
  let stack: TestStack;
  before(() => {
    stack = openStack();
  });
  after(() => stack.close());

  /** A queue of its own, a watched worker for it (the first BullMQ worker on a silent Redis if asked), and what it did. */
  async function rig(options: { wedgedFirst?: boolean; jobMs?: number } = {}) {
    const name = uniqueName('q');
    const prefix = queuePrefix(stack.config);
    const healthy = connectionOf(stack.config, stack.redis);
    const queue = new Queue<{ n: number }>(name, { connection: healthy, prefix });
    const silent = options.wedgedFirst ? await silentRedis() : undefined;
    const done: number[] = [];
    const replaced: Parameters<NonNullable<WatchedWorkerOptions<{ n: number }>['onReplace']>>[0][] = [];
    let made = 0;
    const worker = new WatchedWorker<{ n: number }>({
      ...FAST,
      queue,
      process: async (job: Job<{ n: number }>) => {
        await sleep(options.jobMs ?? 0);
        done.push(job.data.n);
      },
      make: (processor) => new Worker(name, processor, { connection: made++ === 0 && silent ? silent.connection : healthy, prefix, autorun: false }),
      onReplace: (facts) => replaced.push(facts),
    });
    return {
      queue,
      worker,
      done,
      replaced,
      async close() {
        await worker.close();
        await queue.obliterate({ force: true });
        await queue.close();
        await silent?.close();
      },
    };
  }

  test('a worker that takes no job while jobs wait is replaced by one with new connections, which takes them all', async () => {
    const r = await rig({ wedgedFirst: true });
    const { worker } = r;
    const running = worker.run();
    try {
      await r.queue.addBulk([1, 2, 3].map((n) => ({ name: 'job', data: { n } })));
      for (let i = 0; i < 100 && r.done.length < 3; i++) await sleep(100);
      assert.deepEqual([...r.done].sort(), [1, 2, 3]);
      assert.equal(worker.replacements, 1);
      assert.equal(r.replaced[0]!.waiting, 3);
      assert.ok(r.replaced[0]!.waitedMs >= FAST.stuckMs, `replaced after ${r.replaced[0]!.waitedMs} ms of waiting jobs`);
    } finally {
      await r.close();
      await running;
    }
  });

  test('a stopping worker does not wait on a wedged connection: the close of a worker with no job in hand is bounded', async () => {
    const r = await rig({ wedgedFirst: true });
    const running = r.worker.run();
    await sleep(200);
    const started = Date.now();
    await r.close();
    await running;
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 4 * FAST.closeMs, `closed in ${tookMs} ms`);
    assert.equal(r.worker.replacements, 0);
  });

  test('a worker that holds a job while others wait, or that is idle with nothing waiting, is left alone', async () => {
    const r = await rig({ jobMs: 2 * FAST.stuckMs });
    const { worker } = r;
    const running = worker.run();
    try {
      await sleep(2 * FAST.stuckMs);
      assert.equal(worker.replacements, 0, 'idle with an empty queue');
      await r.queue.addBulk([1, 2].map((n) => ({ name: 'job', data: { n } })));
      for (let i = 0; i < 150 && r.done.length < 2; i++) await sleep(100);
      assert.deepEqual(r.done, [1, 2]);
      assert.equal(worker.replacements, 0, 'busy for twice the stuck time while a job waited');
    } finally {
      await r.close();
      await running;
    }
  });
});
