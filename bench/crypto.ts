/**
 * Crypto benchmark: OpenSSL's own one-pass AES-256-GCM rates (encrypt, decrypt), measured in the same run
 * without allocation (bench/openssl_gcm.py: pyca `cryptography`'s `update_into` into one preallocated
 * buffer, in the stack's Python venv), against rekey's pooled re-encryption (decrypt V2 GCM + encrypt V2 GCM
 * per byte). Run: `npm run bench -- crypto`.
 * Env: BENCH_GIB (default 2) bytes re-encrypted per thread count, BENCH_OPENSSL_SECONDS (default 3).
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { primeAllocator } from '../src/crypto/allocator.js';
import { DataKey } from '../src/crypto/data-key.js';
import { CipherPool, type PoolStream } from '../src/crypto/pool.js';
import { GCM } from '../src/formats/envelope.js';
import { machineLine, stackPython } from './machine.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TOTAL = Number(process.env['BENCH_GIB'] ?? 2) * GiB;
const OPENSSL_SECONDS = Number(process.env['BENCH_OPENSSL_SECONDS'] ?? 3);
/**
 * One in-memory object, re-encrypted over and over. At 16 MiB it stays in the last-level cache, as body
 * bytes do that the kernel has just copied in from a socket; outputs still stream through fresh memory.
 * OpenSSL's loop runs on buffers of the same size.
 */
const OBJECT = 16 * MiB;
const ANCHOR = new URL('./openssl_gcm.py', import.meta.url).pathname;
const execFileAsync = promisify(execFile);

/** Bytes per wall-clock second, and per CPU second of the process (every thread), which holds on a loaded machine. */
interface Rate {
  readonly wall: number;
  readonly cpu: number;
}

interface OpensslSpeed {
  readonly version: string;
  readonly encrypt: Rate;
  readonly decrypt: Rate;
}

/** One process of bench/openssl_gcm.py. */
async function opensslRun(directions: 'both' | 'encrypt'): Promise<OpensslSpeed> {
  const { stdout } = await execFileAsync(stackPython(), [ANCHOR, String(OPENSSL_SECONDS), String(OBJECT), directions]);
  const { openssl, encrypt, decrypt = { wall: Number.NaN, cpu: Number.NaN } } = JSON.parse(stdout) as { openssl: string; encrypt: Rate; decrypt?: Rate };
  return { version: openssl, encrypt, decrypt };
}

/** Encrypt rate of two OpenSSL processes at once, summed: how well this machine itself runs two AES threads. */
async function opensslTwoProcesses(): Promise<number> {
  const runs = await Promise.all([opensslRun('encrypt'), opensslRun('encrypt')]);
  return runs.reduce((sum, run) => sum + run.encrypt.wall, 0);
}

/** Two passes over every byte: the re-encryption limit is the harmonic combination of both rates. */
function twoPassLimit(encrypt: number, decrypt: number): number {
  return 1 / (1 / decrypt + 1 / encrypt);
}

async function measure(bytes: number, run: () => unknown): Promise<Rate> {
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  await run();
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  return { wall: bytes / wall, cpu: bytes / ((used.user + used.system) / 1e6) };
}

/**
 * Node's own ceiling: decipher.update → cipher.update on 1 MiB chunks in this thread, no pool, with the
 * allocator primed as the pool's threads prime it.
 */
function nodeCipherLimit(body: Buffer, key: Buffer, iv: Buffer): Promise<Rate> {
  primeAllocator();
  return measure(TOTAL / 2, () => {
    for (let done = 0; done < TOTAL / 2; done += OBJECT) {
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
      for (let at = 0; at < OBJECT; at += MiB) cipher.update(decipher.update(body.subarray(at, at + MiB)));
    }
  });
}

async function* slices(body: Buffer): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < body.length; at += MiB) yield body.subarray(at, at + MiB);
}

interface PoolResult {
  readonly rate: Rate;
  readonly utilisation: readonly number[];
}

async function poolReencrypt(threads: number, body: Buffer, key: Buffer, iv: Buffer): Promise<PoolResult> {
  const pool = new CipherPool({ threads });
  try {
    const stream = (): PoolStream =>
      pool.reencrypt(slices(body), {
        decrypt: { cipher: GCM, key: DataKey.adopt(Buffer.from(key)), iv, expectedLength: OBJECT },
        encrypt: { cipher: GCM, key: DataKey.generate(), iv: randomBytes(12) },
      });
    // Each chunk goes back to the pool once read, as rekey's upload gives it back once copied.
    const drain = async (s: PoolStream): Promise<void> => {
      for await (const piece of s as AsyncIterable<Uint8Array>) s.release(piece);
    };
    await drain(stream());
    const before = pool.utilisation();
    const objects = Math.ceil(TOTAL / OBJECT);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < objects) {
        next += 1;
        await drain(stream());
      }
    };
    const rate = await measure(objects * OBJECT, () => Promise.all(Array.from({ length: threads * 2 }, lane)));
    const after = pool.utilisation();
    const utilisation = after.map((u, i) => {
      const b = before[i];
      const busy = u.busyMs - (b?.busyMs ?? 0);
      return busy / (busy + u.idleMs - (b?.idleMs ?? 0));
    });
    return { rate, utilisation };
  } finally {
    await pool.close();
  }
}

const mb = (bytesPerSecond: number): string => `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`;

const key = randomBytes(32);
const iv = randomBytes(12);
const plain = randomBytes(OBJECT);
const sealer = createCipheriv('aes-256-gcm', key, iv);
const body = Buffer.concat([sealer.update(plain), sealer.final(), sealer.getAuthTag()]);

console.log(machineLine());
console.log(`re-encrypting ${TOTAL / GiB} GiB (V2 GCM → V2 GCM, ${OBJECT / MiB} MiB objects, 1 MiB chunks, 2 streams per thread) per thread count`);
const sslBefore = await opensslRun('both');
const sslTwoProcesses = await opensslTwoProcesses();
const node = await nodeCipherLimit(body, key, iv);
const one = await poolReencrypt(1, body, key, iv);
const two = await poolReencrypt(2, body, key, iv);
const sslAfter = await opensslRun('both');
const mean = (pick: (s: OpensslSpeed) => number): number => (pick(sslBefore) + pick(sslAfter)) / 2;
const limit = twoPassLimit(mean((s) => s.encrypt.wall), mean((s) => s.decrypt.wall));
const cpuLimit = twoPassLimit(mean((s) => s.encrypt.cpu), mean((s) => s.decrypt.cpu));
const both = (r: Rate, of: Rate): string => `${mb(r.wall)} (${(r.wall / of.wall).toFixed(2)}), ${mb(r.cpu)} per CPU-s (${(r.cpu / of.cpu).toFixed(2)})`;
const anchor = { wall: limit, cpu: cpuLimit };

console.log(
  `${sslBefore.version} aes-256-gcm, update_into ${OBJECT / MiB} MiB, no allocation: encrypt ${mb(mean((s) => s.encrypt.wall))}, decrypt ${mb(mean((s) => s.decrypt.wall))}` +
    ` (before ${mb(sslBefore.encrypt.wall)}/${mb(sslBefore.decrypt.wall)}, after ${mb(sslAfter.encrypt.wall)}/${mb(sslAfter.decrypt.wall)});` +
    ` per CPU-s ${mb(mean((s) => s.encrypt.cpu))}/${mb(mean((s) => s.decrypt.cpu))}`,
);
console.log(`openssl re-encryption limit (1/(1/dec+1/enc)): ${mb(limit)}, ${mb(cpuLimit)} per CPU-s`);
console.log(`openssl encrypt in 2 processes at once: ${mb(sslTwoProcesses)}, ${(sslTwoProcesses / sslBefore.encrypt.wall).toFixed(2)}× one process: this machine's own 2-thread scaling`);
console.log(`(of the openssl limit in brackets; CPU-s of this whole process, every thread)`);
console.log(`node cipher limit (OpenSSL ${process.versions.openssl}), one thread, no pool: ${both(node, anchor)}`);
console.log(`rekey pool, 1 thread: ${both(one.rate, anchor)}, thread busy ${one.utilisation.map((u) => u.toFixed(2)).join(', ')}`);
console.log(`rekey pool, 2 threads: ${both(two.rate, anchor)}, thread busy ${two.utilisation.map((u) => u.toFixed(2)).join(', ')}; ${(two.rate.wall / one.rate.wall).toFixed(2)}× one thread`);
console.log(`reencrypt_vs_node_cipher=${(one.rate.wall / node.wall).toFixed(3)}`);
console.log(`reencrypt_cpu_vs_openssl=${(one.rate.cpu / cpuLimit).toFixed(3)}`);
console.log(`reencrypt_vs_openssl=${(one.rate.wall / limit).toFixed(3)}`);
