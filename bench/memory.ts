/**
 * Memory benchmark: peak RSS of rekeying one large object against one small object, each rekey in a fresh
 * process (bench/memory-child.ts), so each peak belongs to that rekey alone. Memory must not grow with the
 * object (docs/design.md §4.6). Run: `node --import tsx bench/memory.ts`.
 * Env: BENCH_ENDPOINT (versitygw; moto keeps every object in its own memory), BENCH_SMALL_MIB (256),
 * BENCH_LARGE_MIB (2048), BENCH_REPEATS (2 fresh processes per size, in alternating order),
 * BENCH_RUNTIME (`compiled`: the child and the cipher threads run as JS compiled by tsc, as the installed
 * CLI runs from dist/; `tsx`: from source, as tests do, which adds tsx to every thread), and
 * BENCH_PART_MIB / BENCH_QUEUE_SIZE to rekey with other upload settings than the product's defaults.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { generateSharedKey, putSeedObject } from '../scripts/seed/s3ec-writer.js';
import { freshBucket, freshKmsKey, openStack, type TestKey, type TestStack } from '../test/helpers/stack.js';
import type { MemoryReport } from './memory-child.js';
import { dropBucket, envEndpoints, envNumber, endpointOverrides, machineLine, mbPerSecond, MiB, seconds, type EndpointName } from './support.js';

const [ENDPOINT = 'versitygw'] = envEndpoints('BENCH_ENDPOINT', ['versitygw']);
const SMALL = envNumber('BENCH_SMALL_MIB', 256) * MiB;
const LARGE = envNumber('BENCH_LARGE_MIB', 2048) * MiB;
const REPEATS = envNumber('BENCH_REPEATS', 2);
const RUNTIME = process.env['BENCH_RUNTIME'] ?? 'compiled';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD = 'bench/memory-child.ts';

interface Seeded {
  readonly key: string;
  readonly size: number;
  /** Index into the two KMS keys of the key the object's data key is under now. */
  under: number;
}

/** Random plaintext made as it is read, so seeding a large object holds only a few MiB. */
async function* randomPlaintext(size: number): AsyncGenerator<Buffer> {
  for (let left = size; left > 0; left -= MiB) yield randomBytes(Math.min(MiB, left));
}

async function seed(stack: TestStack, bucket: string, kmsKey: TestKey, key: string, size: number): Promise<Seeded> {
  const dataKey = await generateSharedKey(stack.kms, kmsKey.keyId, 'v2');
  const started = process.hrtime.bigint();
  await putSeedObject(stack.s3, { bucket, key, format: 'v2' }, () => Readable.from(randomPlaintext(size)), dataKey);
  dataKey.plaintext.fill(0);
  console.log(`seeded ${key}: ${size / MiB} MiB in ${seconds(started).toFixed(1)} s`);
  return { key, size, under: 0 };
}

const execFileAsync = promisify(execFile);

interface ChildRuntime {
  /** Node arguments that run the child, before its own arguments. */
  readonly args: readonly string[];
  dispose(): Promise<void>;
}

/**
 * The child and everything it loads, cipher thread included, compiled by the project's tsc into a
 * temporary directory (never into the repository) that resolves packages from the project's node_modules.
 */
async function compiledRuntime(): Promise<ChildRuntime> {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-bench-memory-'));
  const outDir = join(dir, 'out');
  const tsconfig = {
    extends: join(ROOT, 'tsconfig.json'),
    compilerOptions: { outDir, rootDir: ROOT, sourceMap: false },
    files: [join(ROOT, CHILD), join(ROOT, 'src/crypto/cipher-thread.ts')],
    include: [],
  };
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await execFileAsync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')]);
  // tsc compiles only TypeScript: the Redis scripts go beside the compiled modules, as the build puts them (scripts/copy-lua.mjs).
  await cp(join(ROOT, 'src'), join(outDir, 'src'), { recursive: true, filter: async (path) => (await stat(path)).isDirectory() || path.endsWith('.lua') });
  return { args: [join(outDir, CHILD.replace(/\.ts$/, '.js'))], dispose: () => rm(dir, { recursive: true, force: true }) };
}

async function childRuntime(): Promise<ChildRuntime> {
  if (RUNTIME === 'compiled') return compiledRuntime();
  /* Precondition: one of the two runtimes. */
  if (RUNTIME !== 'tsx') throw new RangeError(`BENCH_RUNTIME must be compiled or tsx, got ${RUNTIME}`);
  return { args: ['--import', 'tsx', join(ROOT, CHILD)], dispose: async () => undefined };
}

async function rekeyInChild(runtime: ChildRuntime, endpoint: EndpointName, bucket: string, object: Seeded, keys: readonly TestKey[]): Promise<MemoryReport> {
  const target = keys[1 - object.under]!;
  const { stdout } = await execFileAsync(process.execPath, [...runtime.args, endpoint, bucket, object.key, target.keyId, target.arn], {
    env: process.env,
  });
  const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as MemoryReport;
  if (report.outcome !== 'rotated') throw new Error(`${object.key}: ${report.outcome}`);
  object.under = 1 - object.under;
  return report;
}

function uploadSettings(): string {
  const part = process.env['BENCH_PART_MIB'];
  const queue = process.env['BENCH_QUEUE_SIZE'];
  return `${part ? `${part} MiB` : 'default'} parts, queue ${queue ?? 'default'}`;
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

function reportLine(object: Seeded, r: MemoryReport): string {
  const hwm = r.vmHwmBytes === undefined ? '' : ` (VmHWM ${mib(r.vmHwmBytes)})`;
  const sampled = `sampled peaks: main-thread buffers ${mib(r.sampled.arrayBuffers)}, JS heap ${mib(r.sampled.heapUsed)}`;
  const gb = r.bytes / 1e9;
  const perGb = `per GB: ${(r.cpuSeconds / gb).toFixed(2)} core-s, main-thread GC ${(r.gc.major / gb).toFixed(1)} major, ${(r.gc.minor / gb).toFixed(0)} minor, ${(r.gc.ms / gb).toFixed(0)} ms`;
  return `  ${mib(object.size).padStart(9)}: peak RSS ${mib(r.peakRssBytes)}${hwm}, ready ${mib(r.readyRssBytes)}; ${sampled}; rekeyed in ${r.seconds.toFixed(1)} s (${mbPerSecond(r.bytes, r.seconds).toFixed(0)} MB/s); ${perGb}`;
}

async function main(): Promise<void> {
  console.log(machineLine());
  console.log(`endpoint ${ENDPOINT}; one object of ${mib(SMALL)} and one of ${mib(LARGE)}, each rekeyed ${REPEATS}× in a fresh ${RUNTIME} process (default pool; upload ${uploadSettings()})`);
  const runtime = await childRuntime();
  const stack = openStack(endpointOverrides(ENDPOINT));
  const bucket = await freshBucket(stack.s3);
  try {
    const keys = [await freshKmsKey(stack.kms, 'bench old'), await freshKmsKey(stack.kms, 'bench new')];
    const small = await seed(stack, bucket, keys[0]!, 'small', SMALL);
    const large = await seed(stack, bucket, keys[0]!, 'large', LARGE);
    const peaks = new Map<Seeded, number[]>([[small, []], [large, []]]);
    for (let i = 0; i < REPEATS; i++) {
      // Alternating the order spreads drift in the shared machine's load over both sizes.
      for (const object of i % 2 === 0 ? [small, large] : [large, small]) {
        const report = await rekeyInChild(runtime, ENDPOINT, bucket, object, keys);
        console.log(reportLine(object, report));
        peaks.get(object)!.push(report.peakRssBytes);
      }
    }
    // The worst peak of each size: bounded memory is a promise about the worst case.
    const smallPeak = Math.max(...peaks.get(small)!);
    const largePeak = Math.max(...peaks.get(large)!);
    console.log(`peak RSS, worst of ${REPEATS}: ${mib(SMALL)} object ${mib(smallPeak)}, ${mib(LARGE)} object ${mib(largePeak)}`);
    console.log(`rss_2g_over_256m=${(largePeak / smallPeak).toFixed(3)}`);
  } finally {
    await dropBucket(stack.s3, bucket);
    await stack.close();
    await runtime.dispose();
  }
}

await main();
