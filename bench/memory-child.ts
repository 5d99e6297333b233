/**
 * One rekey of one object in a fresh process, for bench/memory.ts: the process's peak RSS is then the
 * peak of this rekey alone. Prints one JSON line (MemoryReport). Not meant to be run by hand:
 * `node --import tsx bench/memory-child.ts <endpoint> <bucket> <key> <target key id> <target key arn>`.
 */
import { readFileSync } from 'node:fs';
import { CipherPool } from '../src/crypto/pool.js';
import { KmsBatcher } from '../src/kms/batcher.js';
import { RedisRateLimiter } from '../src/kms/rate-limiter.js';
import { Rekeyer } from '../src/rotate/rekey.js';
import { rotationTarget } from '../src/rotate/target.js';
import type { ReplacementOptions } from '../src/s3/replacement-upload.js';
import { noJournal } from '../src/s3/upload-journal.js';
import { openStack } from '../test/helpers/stack.js';
import { endpointOverrides, ENDPOINT_NAMES, envNumber, gcBetween, gcSoFar, MiB, seconds, type EndpointName, type GcTotals } from './support.js';

export interface MemoryReport {
  readonly outcome: string;
  readonly bytes: number;
  readonly seconds: number;
  /** RSS once everything is set up (modules, clients, cipher threads), before the rekey starts. */
  readonly readyRssBytes: number;
  /** `process.resourceUsage().maxRSS` (the kernel's peak, in KiB there) at the end. */
  readonly peakRssBytes: number;
  /** VmHWM from /proc/self/status, the same peak as the kernel reports it to `ps`. */
  readonly vmHwmBytes: number | undefined;
  /** Highest main-thread figures seen every 50 ms: where the peak comes from. */
  readonly sampled: MemorySample;
  /** Main-thread garbage collections during the rekey. */
  readonly gc: GcTotals;
  /** CPU seconds of the process (all threads) during the rekey. */
  readonly cpuSeconds: number;
}

export interface MemorySample {
  readonly rss: number;
  /** Buffers and ArrayBuffers held by the main thread (upload parts, cipher output, chunks). */
  readonly arrayBuffers: number;
  readonly heapUsed: number;
}

/** Samples memory while a rekey runs; `stop` returns the highest value of each figure. */
function sampleMemory(): () => MemorySample {
  const peak = { rss: 0, arrayBuffers: 0, heapUsed: 0 };
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    peak.rss = Math.max(peak.rss, m.rss);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
  }, 50);
  return () => {
    clearInterval(timer);
    return { ...peak };
  };
}

function vmHwmBytes(): number | undefined {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
}

/** The product's upload defaults unless BENCH_PART_MIB / BENCH_QUEUE_SIZE ask for others, to see what they cost. */
function uploadOptions(): Omit<ReplacementOptions, 'journal'> {
  return {
    ...(process.env['BENCH_PART_MIB'] ? { partBytes: envNumber('BENCH_PART_MIB', 16) * MiB } : {}),
    ...(process.env['BENCH_QUEUE_SIZE'] ? { queueSize: envNumber('BENCH_QUEUE_SIZE', 4) } : {}),
  };
}

async function rekeyOnce(endpoint: EndpointName, bucket: string, key: string, targetKeyId: string, targetKeyArn: string): Promise<MemoryReport> {
  const stack = openStack(endpointOverrides(endpoint));
  const pool = new CipherPool();
  try {
    const limiter = new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'bench-memory', ratePerSecond: 100 });
    const rekeyer = new Rekeyer(
      { s3: stack.s3, kms: new KmsBatcher({ kms: stack.kms, limiter }), pool, upload: uploadOptions() },
      rotationTarget({ mode: 'rekey', targetKey: targetKeyId, targetKeyArn, targetFormat: 'same', sourceKeyArns: [] }),
    );
    // The cipher threads prime their allocator as they start; an empty round trip waits for that.
    await pool.threadStreamCounts();
    const readyRssBytes = process.memoryUsage.rss();
    const stopSampling = sampleMemory();
    const gc = gcSoFar();
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    const [outcome] = await rekeyer.rotate([{ bucket, key }], noJournal);
    const sampled = stopSampling();
    const used = process.cpuUsage(cpu);
    return {
      outcome: outcome?.outcome === 'rotated' ? 'rotated' : `${outcome?.outcome}:${outcome?.reason} ${outcome?.message}`,
      bytes: outcome?.bytesRead ?? 0,
      seconds: seconds(started),
      readyRssBytes,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      vmHwmBytes: vmHwmBytes(),
      sampled,
      gc: gcBetween(gc, gcSoFar()),
      cpuSeconds: (used.user + used.system) / 1e6,
    };
  } finally {
    await pool.close();
    await stack.close();
  }
}

const [endpoint, bucket, key, targetKeyId, targetKeyArn] = process.argv.slice(2);
/* Precondition: called by bench/memory.ts with every argument. */
if (!ENDPOINT_NAMES.includes(endpoint as EndpointName) || !bucket || !key || !targetKeyId || !targetKeyArn) {
  throw new Error('usage: memory-child.ts <moto|versitygw> <bucket> <key> <target key id> <target key arn>');
}
process.stdout.write(`${JSON.stringify(await rekeyOnce(endpoint as EndpointName, bucket, key, targetKeyId, targetKeyArn))}\n`);
