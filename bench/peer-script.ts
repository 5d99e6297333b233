/**
 * rekey against the script an operator would write instead (issue 18): the same seeded content, on the
 * stack's strict S3 (versitygw) and local-kms, rotated by `rekey run --mode rekey` as a user runs it (the
 * installed CLI, bin/rekey.js → dist/, its own process, its defaults) and by `bench/s3ec_rotate.py`, the AWS
 * S3 Encryption Client for Python reading under the old key and writing under the new one in 8 threads.
 * Each run gets a fresh bucket, a server-side copy of the seeded objects; the two sides alternate which goes
 * first in each pair. Figures are whole-process: wall clock from spawn to exit, and the CPU (user + sys)
 * and peak RSS of the child and its descendants (getrusage RUSAGE_CHILDREN of a small Python wrapper).
 * Two workloads: a mixed one (1 MiB and 32 MiB objects) and one of 16 KiB objects, per-object figures.
 * The last lines are the medians over pairs of rekey / script for the mixed workload:
 * `rekey_vs_script_cpu=…` then `rekey_vs_script_wall=…`.
 * Run: `npm run bench -- peer-script` (builds dist/ first). Env: BENCH_PAIRS (3), BENCH_MIXED_1MIB (200),
 * BENCH_MIXED_32MIB (4), BENCH_SMALL_OBJECTS (600), BENCH_SCRIPT_THREADS (8), BENCH_WORKLOADS
 * (`small,mixed`), BENCH_REKEY_ARGS (extra `rekey run` flags, space-separated), BENCH_CPU_PROF (a folder:
 * the rekey process writes `--cpu-prof` profiles there), BENCH_REKEY_ROOT (another checkout of rekey, e.g. an
 * older commit, whose build is measured instead of this one).
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CopyObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { seedObjects } from '../scripts/seed/seed.js';
import { freshBucket, freshKmsKey, localKms, openStack, strictS3, uniqueName, type TestKey, type TestStack } from '../test/helpers/stack.js';
import { stackPython } from './machine.js';
import { dropBucket, envInt, formatSpread, machineLine, MiB, serverCpuSeconds, spread } from './support.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAIRS = envInt('BENCH_PAIRS', 3);
const MIXED_1MIB = envInt('BENCH_MIXED_1MIB', 200);
const MIXED_32MIB = envInt('BENCH_MIXED_32MIB', 4);
const SMALL_OBJECTS = envInt('BENCH_SMALL_OBJECTS', 600);
const SCRIPT_THREADS = envInt('BENCH_SCRIPT_THREADS', 8);
const WORKLOADS = (process.env.BENCH_WORKLOADS ?? 'small,mixed').split(',').map((w) => w.trim());
const REKEY_ARGS = (process.env.BENCH_REKEY_ARGS ?? '').split(' ').filter(Boolean);
const CPU_PROF = process.env.BENCH_CPU_PROF;
/** The checkout whose rekey runs (its bin/rekey.js and dist/): another one, built, measures a before against the same script. */
const REKEY_ROOT = process.env.BENCH_REKEY_ROOT ?? ROOT;

/**
 * Runs argv[1:] and reports, on the last line of stderr, its wall time and the rusage of every descendant
 * it waited for: Node cannot read a child's rusage, Python's resource module can.
 */
const RUSAGE_WRAPPER = `
import json, resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[1:])
wall = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall": wall, "cpu": r.ru_utime + r.ru_stime, "maxrss_kib": r.ru_maxrss}), file=sys.stderr)
`;

type Side = 'rekey' | 'script';

interface Measured {
  readonly side: Side;
  readonly wall: number;
  readonly cpu: number;
  readonly maxRssMiB: number;
  /** CPU seconds of the S3 server (versitygw) meanwhile, when its PID file is readable. */
  readonly serverCpu: number | undefined;
}

interface Workload {
  readonly name: 'mixed' | 'small';
  readonly source: string;
  readonly keys: readonly string[];
  readonly bytes: number;
}

/** Where both sides run: whatever they leave on local disk (rekey's default report store) goes with it. */
const WORK_DIR = await mkdtemp(join(tmpdir(), 'rekey-peer-'));

async function measured(side: Side, argv: readonly string[], env: NodeJS.ProcessEnv): Promise<Measured & { stdout: string }> {
  const server = serverCpuSeconds('versitygw');
  const { stdout, stderr } = await run(stackPython(), ['-c', RUSAGE_WRAPPER, ...argv], { env, cwd: WORK_DIR, maxBuffer: 64 << 20 }).catch((e: { stdout?: string; stderr?: string }) => {
    throw new Error(`${side} failed: ${e.stderr ?? String(e)}`);
  });
  const serverAfter = serverCpuSeconds('versitygw');
  const last = JSON.parse(stderr.trim().split('\n').pop()!) as { rc: number; wall: number; cpu: number; maxrss_kib: number };
  if (last.rc !== 0) throw new Error(`${side} exited ${last.rc}: ${stderr.slice(-2000)}`);
  return {
    side,
    stdout,
    wall: last.wall,
    cpu: last.cpu,
    maxRssMiB: last.maxrss_kib / 1024,
    serverCpu: server === undefined || serverAfter === undefined ? undefined : serverAfter - server,
  };
}

function baseEnv(stack: TestStack): NodeJS.ProcessEnv {
  return {
    ...process.env,
    AWS_REGION: stack.config.region,
    AWS_ENDPOINT_URL_S3: stack.config.s3Endpoint,
    AWS_ENDPOINT_URL_KMS: stack.config.kmsEndpoint,
  };
}

async function runRekey(stack: TestStack, bucket: string, target: TestKey, objects: number): Promise<Measured> {
  const prefix = uniqueName('peer');
  const prof = CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [];
  const argv = [process.execPath, ...prof, join(REKEY_ROOT, 'bin/rekey.js'), 'run', '--bucket', bucket, '--mode', 'rekey', '--target-key', target.keyId, '--no-watch', '--json', ...REKEY_ARGS];
  const env = { ...baseEnv(stack), REDIS_URL: stack.config.redisUrl, REKEY_REDIS_PREFIX: prefix };
  const out = await measured('rekey', argv, env);
  const status = JSON.parse(out.stdout.trim().split('\n').pop()!) as { rotated: number; failed: number; skipped: number };
  // Precondition: every object rotated, or the figures compare different work.
  if (status.rotated !== objects) throw new Error(`rekey rotated ${status.rotated} of ${objects} (failed ${status.failed}, skipped ${status.skipped})`);
  await dropRedisPrefix(stack, prefix);
  return out;
}

async function runScript(stack: TestStack, bucket: string, keys: readonly [TestKey, TestKey], objects: number): Promise<Measured> {
  const argv = [stackPython(), join(ROOT, 'bench/s3ec_rotate.py'), '--bucket', bucket, '--old-key-id', keys[0].keyId, '--new-key-id', keys[1].keyId, '--threads', String(SCRIPT_THREADS)];
  const out = await measured('script', argv, baseEnv(stack));
  const result = JSON.parse(out.stdout.trim().split('\n').pop()!) as { objects: number; failed: number };
  // Precondition: the script rotated every object, as rekey must.
  if (result.objects !== objects || result.failed !== 0) throw new Error(`script: ${JSON.stringify(result)} of ${objects}`);
  return out;
}

async function dropRedisPrefix(stack: TestStack, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await stack.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await stack.redis.del(...keys);
  } while (cursor !== '0');
}

async function listKeys(s3: S3Client, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

/** A fresh bucket holding a server-side copy (metadata and all) of the workload's seeded objects. */
async function freshCopy(stack: TestStack, workload: Workload): Promise<string> {
  const bucket = await freshBucket(stack.s3);
  const limit = pLimit(16);
  await Promise.all(
    workload.keys.map((key) =>
      limit(() => stack.s3.send(new CopyObjectCommand({ Bucket: bucket, Key: key, CopySource: `${workload.source}/${encodeURIComponent(key)}`, MetadataDirective: 'COPY' }))),
    ),
  );
  return bucket;
}

async function seed(stack: TestStack, name: Workload['name'], oldKey: TestKey): Promise<Workload> {
  const source = await freshBucket(stack.s3);
  const groups = name === 'mixed' ? [{ prefix: 'm/', count: MIXED_1MIB, size: MiB }, { prefix: 'l/', count: MIXED_32MIB, size: 32 * MiB }] : [{ prefix: 's/', count: SMALL_OBJECTS, size: 16 * 1024 }];
  let bytes = 0;
  for (const g of groups) {
    if (g.count === 0) continue;
    await seedObjects(stack.s3, stack.kms, { bucket: source, prefix: g.prefix, count: g.count, kmsKeyId: oldKey.keyId, sizes: [g.size], concurrency: 8 });
    bytes += g.count * g.size;
  }
  return { name, source, keys: await listKeys(stack.s3, source), bytes };
}

function runLine(workload: Workload, pair: number, m: Measured): string {
  const server = m.serverCpu === undefined ? '' : `, S3 server ${m.serverCpu.toFixed(2)} CPU-s`;
  const perObject = workload.name === 'small' ? `, ${(workload.keys.length / m.wall).toFixed(0)} objects/s, ${((m.cpu / workload.keys.length) * 1000).toFixed(2)} CPU-ms/object` : `, ${(workload.bytes / 1e6 / m.wall).toFixed(0)} MB/s, ${(m.cpu / (workload.bytes / 1e9)).toFixed(2)} CPU-s/GB`;
  return `  pair ${pair} ${m.side.padEnd(6)} ${m.wall.toFixed(2)} s wall, ${m.cpu.toFixed(2)} CPU-s, peak RSS ${m.maxRssMiB.toFixed(0)} MiB${perObject}${server}`;
}

interface Ratios {
  readonly cpu: number[];
  readonly wall: number[];
}

async function runWorkload(stack: TestStack, workload: Workload, keys: readonly [TestKey, TestKey]): Promise<Ratios> {
  const sizes = workload.name === 'mixed' ? `${MIXED_1MIB} × 1 MiB + ${MIXED_32MIB} × 32 MiB` : `${SMALL_OBJECTS} × 16 KiB`;
  console.log(`${workload.name}: ${sizes} (${(workload.bytes / MiB).toFixed(0)} MiB), ${PAIRS} pairs; script ${SCRIPT_THREADS} threads, rekey its defaults ${REKEY_ARGS.join(' ')}`);
  const ratios: Ratios = { cpu: [], wall: [] };
  const all: Measured[] = [];
  for (let pair = 1; pair <= PAIRS; pair++) {
    const order: Side[] = pair % 2 === 1 ? ['rekey', 'script'] : ['script', 'rekey'];
    const got = new Map<Side, Measured>();
    for (const side of order) {
      const bucket = await freshCopy(stack, workload);
      const m = side === 'rekey' ? await runRekey(stack, bucket, keys[1], workload.keys.length) : await runScript(stack, bucket, keys, workload.keys.length);
      console.log(runLine(workload, pair, m));
      got.set(side, m);
      all.push(m);
      await dropBucket(stack.s3, bucket);
    }
    ratios.cpu.push(got.get('rekey')!.cpu / got.get('script')!.cpu);
    ratios.wall.push(got.get('rekey')!.wall / got.get('script')!.wall);
  }
  for (const side of ['rekey', 'script'] as const) {
    const mine = all.filter((m) => m.side === side);
    console.log(`  ${side.padEnd(6)} wall s ${formatSpread(spread(mine.map((m) => m.wall)), 2)}; CPU-s ${formatSpread(spread(mine.map((m) => m.cpu)), 2)}; peak RSS MiB ${formatSpread(spread(mine.map((m) => m.maxRssMiB)))}`);
  }
  console.log(`  rekey / script: CPU ${formatSpread(spread(ratios.cpu), 2)}, wall ${formatSpread(spread(ratios.wall), 2)}`);
  return ratios;
}

async function main(): Promise<void> {
  console.log(machineLine());
  console.log(`rekey from ${REKEY_ROOT}`);
  // The installed CLI runs compiled JS: measure that, built from its checkout.
  await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(REKEY_ROOT, 'tsconfig.build.json')]);
  if (CPU_PROF) await mkdir(CPU_PROF, { recursive: true });
  const stack = openStack({ ...strictS3(), kmsEndpoint: localKms().endpoint });
  const keys = [await freshKmsKey(stack.kms, 'peer old'), await freshKmsKey(stack.kms, 'peer new')] as const;
  const results = new Map<string, Ratios>();
  try {
    for (const name of WORKLOADS) {
      if (name !== 'mixed' && name !== 'small') throw new RangeError(`BENCH_WORKLOADS: unknown workload ${name}; use mixed, small`);
      const workload = await seed(stack, name, keys[0]);
      try {
        results.set(name, await runWorkload(stack, workload, keys));
      } finally {
        await dropBucket(stack.s3, workload.source);
      }
    }
  } finally {
    await stack.close();
    await rm(WORK_DIR, { recursive: true, force: true });
  }
  const small = results.get('small');
  if (small) {
    // Objects/s is the inverse of wall time for the same objects: rekey over script objects/s = 1 / wall ratio.
    console.log(`small_rekey_vs_script_objects_per_s=${spread(small.wall.map((w) => 1 / w)).median.toFixed(3)}`);
    console.log(`small_rekey_vs_script_cpu=${spread(small.cpu).median.toFixed(3)}`);
  }
  const mixed = results.get('mixed');
  if (mixed) {
    console.log(`rekey_vs_script_cpu=${spread(mixed.cpu).median.toFixed(3)}`);
    console.log(`rekey_vs_script_wall=${spread(mixed.wall).median.toFixed(3)}`);
  }
}

await main();
