import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Cluster } from 'ioredis';
import { redisCommand } from './own-redis.js';

const STACK_SCRIPT = new URL('../../scripts/stack.sh', import.meta.url).pathname;

/**
 * A master of the stack's Redis Cluster, which a test kills (SIGKILL) and brings back with
 * `scripts/stack.sh up`, which starts what is not running with the node's own configuration: the
 * same port, its nodes.conf (so it takes its slots back) and its append-only file, fsynced on every
 * write (appendfsync always), so the master returns with every write it acknowledged.
 */
export class ClusterMaster {
  restarts = 0;

  private constructor(readonly port: number) {}

  /** The master that serves the slot of `key`. */
  static async serving(cluster: Cluster, key: string): Promise<ClusterMaster> {
    const slot = (await cluster.cluster('KEYSLOT', key)) as number;
    const master = (await cluster.cluster('SLOTS')).find(([from, to]) => from <= slot && slot <= to)?.[2];
    if (!master) throw new Error(`no master serves slot ${slot}`);
    /* Precondition: the stack's cluster runs on loopback. */
    if (master[0] !== '127.0.0.1') throw new Error(`master ${master[0]}:${master[1]} is not on loopback`);
    return new ClusterMaster(master[1]);
  }

  async restart(downMs: number): Promise<void> {
    await this.kill();
    await sleep(downMs);
    await this.start();
    this.restarts += 1;
  }

  async kill(): Promise<void> {
    const pid = Number(/process_id:(\d+)/.exec(String(await this.command('INFO', 'server')))?.[1]);
    process.kill(pid, 'SIGKILL');
    while (await this.command('PING').catch(() => undefined)) await sleep(20);
  }

  async start(): Promise<void> {
    await promisify(execFile)('bash', [STACK_SCRIPT, 'up'], { env: process.env });
  }

  private command(name: string, ...args: string[]): Promise<unknown> {
    return redisCommand(this.port, name, ...args);
  }
}
