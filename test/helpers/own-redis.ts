import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';

/**
 * A redis-server of the test's own, on a free loopback port, persisting to an append-only file so
 * that jobs and campaign state survive a restart. The shared stack's Redis is never touched: other
 * test files run against it in parallel.
 */
export class OwnRedis {
  private process: ChildProcess | undefined;
  restarts = 0;

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort(), await mkdtemp(join(tmpdir(), 'rekey-redis-')));
    await redis.launch();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** `clean`: SHUTDOWN, which flushes the AOF. `crash`: SIGKILL, losing what was not yet fsynced. */
  async stop(how: 'clean' | 'crash'): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    if (how === 'crash') child.kill('SIGKILL');
    else await this.command('SHUTDOWN').catch(() => undefined);
    await exited;
  }

  async restart(how: 'clean' | 'crash', downMs: number): Promise<void> {
    await this.stop(how);
    await sleep(downMs);
    await this.launch();
    this.restarts += 1;
  }

  async close(): Promise<void> {
    await this.stop('crash');
    await rm(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    this.process = spawn(
      'redis-server',
      ['--bind', '127.0.0.1', '--port', String(this.port), '--dir', this.dir, '--appendonly', 'yes', '--save', '', '--maxmemory-policy', 'noeviction'],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 100; i++) {
      if ((await this.command('PING').catch(() => '')) === 'PONG') return;
      await sleep(50);
    }
    throw new Error(`redis-server on port ${this.port} did not start`);
  }

  private command(name: string): Promise<unknown> {
    return redisCommand(this.port, name);
  }
}

/** One command on its own short-lived connection to a loopback Redis, failing at once when it is down. */
export async function redisCommand(port: number, name: string, ...args: string[]): Promise<unknown> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await client.connect();
    return await client.call(name, ...args);
  } finally {
    client.disconnect();
  }
}
