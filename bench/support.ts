/**
 * What the end-to-end benchmarks share: the S3 endpoints of the local stack, sizes from the environment,
 * throw-away buckets, and the figures every report prints.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { constants, performance, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { DeleteObjectsCommand, DeleteBucketCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { makeQueue } from '../src/campaign/queue.js';
import { makeRedis, type RedisClient } from '../src/config/clients.js';
import type { Config } from '../src/config/config.js';
import { strictS3 } from '../test/helpers/stack.js';
import { STACK_DIR } from './machine.js';

export { machineLine } from './machine.js';

export const MiB = 1024 * 1024;

export type EndpointName = 'moto' | 'versitygw';

export const ENDPOINT_NAMES: readonly EndpointName[] = ['moto', 'versitygw'];

/** moto is the default S3 endpoint of the stack; versitygw the strict one (REKEY_STRICT_S3_ENDPOINT). */
export function endpointOverrides(name: EndpointName): Partial<Config> {
  return name === 'moto' ? {} : strictS3();
}

/** A positive number from the environment, or the default; anything else stops the run before it starts. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!(value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive number, got ${raw}`);
  return value;
}

/** A whole number from the environment, or the default; 0 is allowed (it skips a part of a benchmark). */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${raw}`);
  return value;
}

/** Row `i` of a synthetic inventory: dated partitions, URL-encoded `=` and spaces, ~60 characters. */
export function inventoryKey(i: number): string {
  return `data/year%3D2026/month%3D${String(1 + (i % 12)).padStart(2, '0')}/part-${String(i % 997).padStart(5, '0')}/event%20${String(i).padStart(10, '0')}.json`;
}

/** An inventory-style CSV (`"bucket","key"` rows) of `rows` keys on local disk, made once and reused. */
export async function writeInventoryCsv(rows: number, options: { readonly gzip?: boolean } = {}): Promise<string> {
  const dir = join(tmpdir(), 'rekey-bench');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `inventory-${rows}.csv${options.gzip ? '.gz' : ''}`);
  if (existsSync(path)) return path;
  const file = createWriteStream(`${path}.partial`);
  const out = options.gzip ? createGzip() : file;
  if (options.gzip) out.pipe(file);
  for (let i = 0; i < rows; i++) {
    if (!out.write(`"bench-source-bucket","${inventoryKey(i)}"\n`)) await once(out, 'drain');
  }
  out.end();
  await once(file, 'finish');
  await rename(`${path}.partial`, path);
  return path;
}

/** Redis' own count of the bytes it has allocated (`INFO memory` `used_memory`). */
export async function redisUsedMemory(redis: RedisClient): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
}

/** Removes the queue and every key under a benchmark's Redis prefix. */
export async function dropPrefix(config: Config): Promise<void> {
  const redis = makeRedis(config);
  const queue = makeQueue(config, redis);
  await queue.obliterate({ force: true });
  await queue.close();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.redisPrefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  await redis.quit();
}

/** A comma-separated list of endpoint names from the environment, in the order given. */
export function envEndpoints(name: string, fallback: readonly EndpointName[]): EndpointName[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return [...fallback];
  return raw.split(',').map((part) => {
    const endpoint = part.trim() as EndpointName;
    if (!ENDPOINT_NAMES.includes(endpoint)) throw new RangeError(`${name}: unknown endpoint ${part}; use ${ENDPOINT_NAMES.join(', ')}`);
    return endpoint;
  });
}

/** Deletes every object of a bucket and the bucket: moto holds objects in memory, versitygw on disk. */
export async function dropBucket(s3: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
    const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0) break;
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
}

export function seconds(startedNs: bigint): number {
  return Number(process.hrtime.bigint() - startedNs) / 1e9;
}

/** MB = 10^6 bytes, as docs/benchmarks.md counts. */
export function mbPerSecond(bytes: number, secs: number): number {
  return bytes / secs / 1e6;
}

export interface Spread {
  readonly min: number;
  readonly median: number;
  readonly max: number;
}

export function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2 === 1 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { min: sorted[0]!, median, max: sorted[sorted.length - 1]! };
}

export function formatSpread(s: Spread, digits = 0): string {
  return `median ${s.median.toFixed(digits)} (min ${s.min.toFixed(digits)}, max ${s.max.toFixed(digits)})`;
}

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/**
 * CPU seconds the stack's S3 server has used so far, from /proc (utime + stime), so a benchmark can say
 * how much of the machine the server took. Other test runs against the same server count too.
 * `undefined` when the server was not started by this stack (no PID file) or /proc is not there.
 */
export function serverCpuSeconds(endpoint: EndpointName): number | undefined {
  try {
    const pid = readFileSync(`${STACK_DIR}/${endpoint}.pid`, 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/**
 * Garbage collections of the main thread's isolate (each cipher thread has its own, not counted here):
 * mark-compact (major) and scavenge (minor) counts and their pause time on the main thread.
 */
export interface GcTotals {
  readonly major: number;
  readonly minor: number;
  readonly ms: number;
}

const gcSeen = { major: 0, minor: 0, ms: 0 };
let gcObserver: PerformanceObserver | undefined;

function countGc(entries: readonly PerformanceEntry[]): void {
  for (const entry of entries) {
    const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcSeen.major += 1;
    else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gcSeen.minor += 1;
    gcSeen.ms += entry.duration;
  }
}

/** Collections so far; the observer starts on the first call and delivers late, so its queue is taken. */
export function gcSoFar(): GcTotals {
  if (gcObserver === undefined) {
    gcObserver = new PerformanceObserver((list) => countGc(list.getEntries()));
    gcObserver.observe({ entryTypes: ['gc'] });
  }
  countGc(gcObserver.takeRecords());
  return { ...gcSeen };
}

export interface Timed<T> {
  readonly value: T;
  readonly seconds: number;
  /** CPU seconds of this process (main thread and worker threads) while `run` ran. */
  readonly clientCpu: number;
  /** CPU seconds of the S3 server meanwhile, when known. */
  readonly serverCpu: number | undefined;
  /** Main-thread garbage collections while `run` ran. */
  readonly gc: GcTotals;
}

export async function timed<T>(endpoint: EndpointName, run: () => Promise<T>): Promise<Timed<T>> {
  const gc = gcSoFar();
  const cpu = process.cpuUsage();
  const server = serverCpuSeconds(endpoint);
  const started = process.hrtime.bigint();
  const value = await run();
  const secs = seconds(started);
  const used = process.cpuUsage(cpu);
  const serverAfter = serverCpuSeconds(endpoint);
  const gcAfter = gcSoFar();
  return {
    value,
    seconds: secs,
    clientCpu: (used.user + used.system) / 1e6,
    serverCpu: server === undefined || serverAfter === undefined ? undefined : serverAfter - server,
    gc: gcBetween(gc, gcAfter),
  };
}

export function gcBetween(before: GcTotals, after: GcTotals): GcTotals {
  return { major: after.major - before.major, minor: after.minor - before.minor, ms: after.ms - before.ms };
}

/** Main-thread GCs per GB moved over some timed runs: counts and pause time. */
export function gcPerGb(runs: readonly Timed<number>[]): string {
  const gb = runs.reduce((s, r) => s + r.value, 0) / 1e9;
  const sum = (f: (gc: GcTotals) => number) => runs.reduce((s, r) => s + f(r.gc), 0) / gb;
  return `main-thread GC per GB: ${sum((g) => g.major).toFixed(1)} major, ${sum((g) => g.minor).toFixed(0)} minor, ${sum((g) => g.ms).toFixed(0)} ms`;
}

/** Where the time's CPU went, in cores: this process and the S3 server. */
export function cpuNote(t: Timed<unknown>): string {
  const server = t.serverCpu === undefined ? '' : `, server ${(t.serverCpu / t.seconds).toFixed(2)}`;
  return `cpu cores: bench process ${(t.clientCpu / t.seconds).toFixed(2)}${server}`;
}

export interface RequestTotals {
  readonly count: number;
  /** Sum of the requests' latencies (send to response, SDK retries included). */
  readonly seconds: number;
}

/** Every S3 request of a client, counted with its latency per operation, to see where a phase's time went. */
export class S3RequestLog {
  readonly #totals = new Map<string, { count: number; seconds: number }>();

  constructor(s3: S3Client) {
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const started = performance.now();
        try {
          return await next(args);
        } finally {
          const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
          const totals = this.#totals.get(operation) ?? { count: 0, seconds: 0 };
          totals.count += 1;
          totals.seconds += (performance.now() - started) / 1000;
          this.#totals.set(operation, totals);
        }
      },
      { step: 'initialize', name: 'benchRequestLog' },
    );
  }

  snapshot(): ReadonlyMap<string, RequestTotals> {
    return new Map([...this.#totals].map(([operation, t]) => [operation, { ...t }]));
  }

  /** Requests per operation since `before`, with their mean latency. */
  since(before: ReadonlyMap<string, RequestTotals>): string {
    return this.#deltas(before)
      .map(([operation, t]) => `${operation} ×${t.count} ${((t.seconds / t.count) * 1000).toFixed(0)} ms`)
      .join(', ');
  }

  /**
   * Requests in flight on average since `before` over `wallSeconds`. A request counts until its response
   * headers arrive, so a streamed GET body is not in it: meaningful for small requests only.
   */
  meanInFlight(before: ReadonlyMap<string, RequestTotals>, wallSeconds: number): number {
    return this.#deltas(before).reduce((sum, [, t]) => sum + t.seconds, 0) / wallSeconds;
  }

  #deltas(before: ReadonlyMap<string, RequestTotals>): [string, RequestTotals][] {
    return [...this.#totals]
      .map(([operation, now]): [string, RequestTotals] => [
        operation,
        { count: now.count - (before.get(operation)?.count ?? 0), seconds: now.seconds - (before.get(operation)?.seconds ?? 0) },
      ])
      .filter(([, t]) => t.count > 0);
  }
}
