/**
 * Planning and scaling benchmark. Run: `node --import tsx bench/plan.ts`.
 *
 * 1. Planning: `rekey start --manifest <file>` (the real CLI, so the real planner and queue) plans an
 *    inventory-style CSV of BENCH_PLAN_KEYS keys (default 1,000,000; 0 skips it; `"bucket","key"` rows, URL-encoded
 *    keys, generated on local disk, gzipped with BENCH_PLAN_GZIP=1) into BullMQ. Measured: keys per
 *    second from the campaign's creation to the process' exit, Redis memory per queued key (INFO memory
 *    before and after), and the planner's peak RSS (VmHWM), for a quarter of the keys and for all, and
 *    once more for all with the V8 heap capped at BENCH_PLAN_HEAP_MIB (64; 0 skips it): memory is bounded.
 * 2. Scaling: the same rewrap campaign of BENCH_SCALING_OBJECTS objects (default 3000; 0 skips it) run
 *    by 1, 2 and 4 `rekey worker` processes (BENCH_WORKERS), moving the objects to a fresh key each
 *    time, on BENCH_SCALING_S3 (versitygw, default, or moto); KMS is moto's. Measured: objects per
 *    second from creation to finish, and the CPU used by the workers and by the S3 and KMS servers.
 *
 * Last line: `plan_keys_per_s=<n>` (the full plan).
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CampaignStore } from '../src/campaign/store.js';
import { makeKmsClient, makeRedis, makeS3Client } from '../src/config/clients.js';
import { loadConfig, type Config } from '../src/config/config.js';
import { seedObjects } from '../scripts/seed/seed.js';
import { spawnRekey } from '../test/helpers/cli.js';
import { freshBucket, freshKmsKey, strictS3, uniqueName } from '../test/helpers/stack.js';
import { dropBucket, dropPrefix, envInt, redisUsedMemory, writeInventoryCsv } from './support.js';

const ROOT = resolve(import.meta.dirname, '..');
const KEYS = envInt('BENCH_PLAN_KEYS', 1_000_000);
const GZIP = process.env.BENCH_PLAN_GZIP === '1';
const SCALING_OBJECTS = envInt('BENCH_SCALING_OBJECTS', 3000);
const WORKERS = (process.env.BENCH_WORKERS ?? '1,2,4').split(',').map(Number);
const SCALING_S3 = process.env.BENCH_SCALING_S3 ?? 'versitygw';
const PLAN_HEAP_MIB = envInt('BENCH_PLAN_HEAP_MIB', 64);
const STACK_DIR = process.env.REKEY_STACK_DIR ?? join(ROOT, '.stack');

// Campaigns' rows go to a local folder: every worker of the scaling runs is on this machine.
const REPORT_TO = join(tmpdir(), 'rekey-bench', 'reports');

function rekey(config: Config, args: readonly string[], extra: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawnRekey(config, args, { REKEY_REPORT_TO: REPORT_TO, ...extra });
}

async function output(child: ChildProcess): Promise<string> {
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  let errors = '';
  child.stderr!.on('data', (d: Buffer) => (errors += d.toString()));
  const [code] = (await once(child, 'close')) as [number];
  if (code !== 0) throw new Error(`rekey exited ${code}: ${errors}`);
  return text;
}

function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds a process has used (user + system), from /proc; 0 once it is gone. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function stackPid(name: string): number | undefined {
  try {
    return Number(readFileSync(join(STACK_DIR, `${name}.pid`), 'utf8').trim());
  } catch {
    return undefined;
  }
}

interface PlanFigures {
  readonly keys: number;
  readonly seconds: number;
  readonly keysPerSecond: number;
  readonly redisBytesPerKey: number;
  readonly peakRssMiB: number;
}

/** One `rekey start --manifest` from spawn to exit, its RSS sampled from /proc. */
async function measurePlan(base: Config, targetKey: string, rows: number, heapMiB?: number): Promise<PlanFigures> {
  const manifest = await writeInventoryCsv(rows, { gzip: GZIP });
  const config = { ...base, redisPrefix: uniqueName('bench-plan') };
  const redis = makeRedis(config);
  try {
    const before = await redisUsedMemory(redis);
    const heap = heapMiB === undefined ? {} : { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=${heapMiB}` };
    const child = rekey(config, ['start', '--manifest', manifest, '--mode', 'rewrap', '--target-key', targetKey, '--json'], heap);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, procStatus(child.pid!, 'VmHWM'))), 50);
    const printed = JSON.parse(await output(child)) as { id: string; planned: number };
    const exitedAt = Date.now();
    clearInterval(sampler);
    const status = await new CampaignStore(redis, config.redisPrefix).status(printed.id);
    /* Precondition: the figures are of a complete plan. */
    if (status.planned !== rows || !status.planComplete) throw new Error(`planned ${status.planned} of ${rows}`);
    const after = await redisUsedMemory(redis);
    const seconds = (exitedAt - status.createdAt) / 1000;
    return { keys: rows, seconds, keysPerSecond: rows / seconds, redisBytesPerKey: (after - before) / rows, peakRssMiB: peak / 2 ** 20 };
  } finally {
    await redis.quit();
    await dropPrefix(config);
  }
}

/** A `rekey worker` that has logged its start (its BullMQ connections are up). */
async function startedWorker(config: Config): Promise<ChildProcess> {
  // Rewrap never uses the cipher threads: one is enough, and starting it costs little.
  const child = rekey(config, ['worker', '--concurrency', '4', '--threads', '1'], { REKEY_LOG_LEVEL: 'info' });
  let log = '';
  child.stdout!.on('data', () => undefined);
  await new Promise<void>((ready, fail) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('worker started')) ready();
    });
    child.once('exit', (code) => fail(new Error(`worker exited ${code}: ${log}`)));
  });
  return child;
}

interface ScalingFigures {
  readonly workers: number;
  readonly objects: number;
  readonly seconds: number;
  readonly objectsPerSecond: number;
  /** Cores busy on average, over the campaign's duration. */
  readonly workersCpu: number;
  readonly s3Cpu: number;
  readonly kmsCpu: number;
}

/** Waits until the workers have finished starting up (lazy imports, connections): they idle below 5 % of a core. */
async function settled(children: readonly ChildProcess[]): Promise<void> {
  const total = () => children.reduce((sum, c) => sum + cpuSeconds(c.pid), 0);
  for (let i = 0; i < 30; i++) {
    const before = total();
    await sleep(500);
    if (total() - before < 0.025 * children.length) return;
  }
}

async function measureScaling(config: Config, bucket: string, workers: number, targetKey: string): Promise<ScalingFigures> {
  const children = await Promise.all(Array.from({ length: workers }, () => startedWorker(config)));
  try {
    await settled(children);
    const motoPid = stackPid('moto');
    const s3Pid = SCALING_S3 === 'moto' ? undefined : stackPid('versitygw');
    const cpu = () => ({ workers: children.reduce((sum, c) => sum + cpuSeconds(c.pid), 0), s3: cpuSeconds(s3Pid), kms: cpuSeconds(motoPid) });
    const started = cpu();
    const printed = JSON.parse(await output(rekey(config, ['start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', targetKey, '--kms-rate', '5000', '--json']))) as { id: string };
    const redis = makeRedis(config);
    const store = new CampaignStore(redis, config.redisPrefix);
    let status = await store.status(printed.id);
    while (status.finishedAt === undefined) {
      await sleep(100);
      status = await store.status(printed.id);
    }
    await redis.quit();
    const used = cpu();
    const seconds = (status.finishedAt - status.createdAt) / 1000;
    /* Precondition: every object moved, so runs with different worker counts did the same work. */
    if (status.rotated !== SCALING_OBJECTS) throw new Error(`rotated ${status.rotated} of ${SCALING_OBJECTS}: ${JSON.stringify(status.byReason)}`);
    // The KMS server is moto, which also serves S3 when BENCH_SCALING_S3=moto: its CPU is then both.
    return {
      workers,
      objects: status.done,
      seconds,
      objectsPerSecond: status.done / seconds,
      workersCpu: (used.workers - started.workers) / seconds,
      s3Cpu: (used.s3 - started.s3) / seconds,
      kmsCpu: (used.kms - started.kms) / seconds,
    };
  } finally {
    await Promise.all(children.map(async (c) => {
      c.kill('SIGTERM');
      if (c.exitCode === null) await once(c, 'exit');
    }));
  }
}

const fixed = (n: number, digits = 1) => n.toFixed(digits);

const config = { ...loadConfig(), logLevel: 'silent' as const };
const kms = makeKmsClient(config);
const target = await freshKmsKey(kms, 'bench plan target');
process.stdout.write(`machine: ${cpus().length} cpus (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}, manifest ${GZIP ? 'gzip' : 'plain'} CSV\n`);

const describePlan = (p: PlanFigures) =>
  `keys=${p.keys} seconds=${fixed(p.seconds, 2)} keys_per_s=${Math.round(p.keysPerSecond)} redis_bytes_per_key=${fixed(p.redisBytesPerKey)} planner_peak_rss_mib=${fixed(p.peakRssMiB)} load=${fixed(loadavg()[0]!, 2)}`;
let full: PlanFigures | undefined;
for (const rows of KEYS > 0 ? [Math.round(KEYS / 4), KEYS] : []) {
  full = await measurePlan(config, target.keyId, rows);
  process.stdout.write(`plan ${describePlan(full)}\n`);
}
// Bounded memory, shown rather than claimed: the whole plan again with the V8 heap capped.
if (KEYS > 0 && PLAN_HEAP_MIB > 0) process.stdout.write(`plan_capped_heap heap_mib=${PLAN_HEAP_MIB} ${describePlan(await measurePlan(config, target.keyId, KEYS, PLAN_HEAP_MIB))}\n`);

if (SCALING_OBJECTS > 0) {
  const scalingConfig: Config = { ...config, ...(SCALING_S3 === 'moto' ? {} : strictS3()), redisPrefix: uniqueName('bench-scale') };
  const s3 = makeS3Client(scalingConfig);
  const bucket = await freshBucket(s3);
  const seedKey = await freshKmsKey(kms, 'bench scaling seed');
  const seededAt = Date.now();
  await seedObjects(s3, kms, { bucket, count: SCALING_OBJECTS, kmsKeyId: seedKey.keyId, sizes: [1024], objectsPerDataKey: 10, concurrency: 16 });
  process.stdout.write(`scaling: ${SCALING_OBJECTS} objects of 1 KiB on ${SCALING_S3} (seeded in ${fixed((Date.now() - seededAt) / 1000)} s), 10 objects per data key, rewrap, worker --concurrency 4 --threads 1\n`);
  try {
    const baseline: ScalingFigures[] = [];
    for (const workers of WORKERS) {
      const next = await freshKmsKey(kms, `bench scaling ${workers}`);
      const s = await measureScaling(scalingConfig, bucket, workers, next.keyId);
      baseline.push(s);
      process.stdout.write(
        `scaling workers=${s.workers} objects=${s.objects} seconds=${fixed(s.seconds, 2)} objects_per_s=${fixed(s.objectsPerSecond)} ` +
          `speedup=${fixed(s.objectsPerSecond / baseline[0]!.objectsPerSecond, 2)} workers_cpu=${fixed(s.workersCpu, 2)} s3_cpu=${fixed(s.s3Cpu, 2)} kms_cpu=${fixed(s.kmsCpu, 2)} load=${fixed(loadavg()[0]!, 2)}\n`,
      );
    }
  } finally {
    await dropBucket(s3, bucket);
    s3.destroy();
    await dropPrefix(scalingConfig);
    await rm(REPORT_TO, { recursive: true, force: true });
  }
}
kms.destroy();
if (full) process.stdout.write(`plan_keys_per_s=${Math.round(full.keysPerSecond)}\n`);
