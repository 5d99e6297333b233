/**
 * Crypto benchmark: OpenSSL's own AES-256-GCM speed against rekey's pooled re-encryption (decrypt V2 GCM +
 * encrypt V2 GCM per byte), measured in the same run. Run: `node --import tsx bench/crypto.ts`.
 * Env: BENCH_GIB (default 2) bytes re-encrypted per thread count, BENCH_OPENSSL_SECONDS (default 3).
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { primeAllocator } from '../src/crypto/allocator.js';
import { DataKey } from '../src/crypto/data-key.js';
import { CipherPool } from '../src/crypto/pool.js';
import { GCM } from '../src/formats/envelope.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TOTAL = Number(process.env['BENCH_GIB'] ?? 2) * GiB;
const OPENSSL_SECONDS = Number(process.env['BENCH_OPENSSL_SECONDS'] ?? 3);
/**
 * One in-memory object, re-encrypted over and over. At 16 MiB it stays in the last-level cache, as body
 * bytes do that the kernel has just copied in from a socket; outputs still stream through fresh memory.
 */
const OBJECT = 16 * MiB;

interface OpensslSpeed {
  readonly encrypt: number;
  readonly decrypt: number;
}

/** Bytes per second from `openssl speed -bytes 1048576`, wall-clock (`-elapsed`) as ours is. */
function opensslRun(extra: readonly string[]): number {
  const args = ['speed', '-elapsed', '-seconds', String(OPENSSL_SECONDS), '-bytes', String(MiB), ...extra, '-evp', 'aes-256-gcm'];
  const out = execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const match = /^AES-256-GCM\s+([\d.]+)k\s*$/m.exec(out);
  if (match?.[1] === undefined) throw new Error(`cannot parse openssl speed output:\n${out}`);
  return Number(match[1]) * 1000;
}

function opensslSpeed(): OpensslSpeed {
  return { encrypt: opensslRun([]), decrypt: opensslRun(['-decrypt']) };
}

/** Two passes over every byte: the re-encryption limit is the harmonic combination of both rates. */
function twoPassLimit(s: OpensslSpeed): number {
  return 1 / (1 / s.decrypt + 1 / s.encrypt);
}

/**
 * Node's own ceiling: decipher.update → cipher.update on 1 MiB chunks in this thread, no pool, with the
 * allocator primed as the pool's threads prime it.
 */
function nodeCipherLimit(body: Buffer, key: Buffer, iv: Buffer): number {
  primeAllocator();
  const started = process.hrtime.bigint();
  for (let done = 0; done < TOTAL / 2; done += OBJECT) {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
    for (let at = 0; at < OBJECT; at += MiB) cipher.update(decipher.update(body.subarray(at, at + MiB)));
  }
  return TOTAL / 2 / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function* slices(body: Buffer): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < body.length; at += MiB) yield body.subarray(at, at + MiB);
}

interface PoolResult {
  readonly bytesPerSecond: number;
  readonly utilisation: readonly number[];
}

async function poolReencrypt(threads: number, body: Buffer, key: Buffer, iv: Buffer): Promise<PoolResult> {
  const pool = new CipherPool({ threads });
  try {
    const stream = (): AsyncIterable<Uint8Array> =>
      pool.reencrypt(slices(body), {
        decrypt: { cipher: GCM, key: DataKey.adopt(Buffer.from(key)), iv, expectedLength: OBJECT },
        encrypt: { cipher: GCM, key: DataKey.generate(), iv: randomBytes(12) },
      });
    for await (const piece of stream()) void piece;
    const before = pool.utilisation();
    const objects = Math.ceil(TOTAL / OBJECT);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < objects) {
        next += 1;
        for await (const piece of stream()) void piece;
      }
    };
    const started = process.hrtime.bigint();
    await Promise.all(Array.from({ length: threads * 2 }, lane));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const after = pool.utilisation();
    const utilisation = after.map((u, i) => {
      const b = before[i];
      const busy = u.busyMs - (b?.busyMs ?? 0);
      return busy / (busy + u.idleMs - (b?.idleMs ?? 0));
    });
    return { bytesPerSecond: (objects * OBJECT) / seconds, utilisation };
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

console.log(`cpu: ${cpus()[0]?.model ?? 'unknown'} ×${cpus().length}; node ${process.version}; ${execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim()}`);
console.log(`re-encrypting ${TOTAL / GiB} GiB (V2 GCM → V2 GCM, ${OBJECT / MiB} MiB objects, 1 MiB chunks, 2 streams per thread) per thread count`);
const sslBefore = opensslSpeed();
const sslTwoProcesses = opensslRun(['-multi', '2']);
const node = nodeCipherLimit(body, key, iv);
const one = await poolReencrypt(1, body, key, iv);
const two = await poolReencrypt(2, body, key, iv);
const sslAfter = opensslSpeed();
const ssl = { encrypt: (sslBefore.encrypt + sslAfter.encrypt) / 2, decrypt: (sslBefore.decrypt + sslAfter.decrypt) / 2 };
const limit = twoPassLimit(ssl);

console.log(`openssl aes-256-gcm 1 MiB: encrypt ${mb(ssl.encrypt)}, decrypt ${mb(ssl.decrypt)} (before ${mb(sslBefore.encrypt)}/${mb(sslBefore.decrypt)}, after ${mb(sslAfter.encrypt)}/${mb(sslAfter.decrypt)})`);
console.log(`openssl re-encryption limit (1/(1/dec+1/enc)): ${mb(limit)}`);
console.log(`openssl encrypt with 2 processes (-multi 2): ${mb(sslTwoProcesses)}, ${(sslTwoProcesses / sslBefore.encrypt).toFixed(2)}× one process: this machine's own 2-thread scaling`);
console.log(`node cipher limit, one thread, no pool: ${mb(node)} (${(node / limit).toFixed(2)} of openssl)`);
console.log(`rekey pool, 1 thread: ${mb(one.bytesPerSecond)} (thread busy ${one.utilisation.map((u) => u.toFixed(2)).join(', ')})`);
console.log(`rekey pool, 2 threads: ${mb(two.bytesPerSecond)} (thread busy ${two.utilisation.map((u) => u.toFixed(2)).join(', ')}), ${(two.bytesPerSecond / one.bytesPerSecond).toFixed(2)}× one thread`);
console.log(`reencrypt_vs_node_cipher=${(one.bytesPerSecond / node).toFixed(3)}`);
console.log(`reencrypt_vs_openssl=${(one.bytesPerSecond / limit).toFixed(3)}`);
