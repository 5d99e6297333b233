import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { DataKey } from '../../../src/crypto/data-key.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import type { DecryptSpec, EncryptSpec } from '../../../src/crypto/specs.js';
import { decryptSpecFor } from '../../../src/crypto/specs.js';
import { deriveV3Commitment, deriveV3ContentKey } from '../../../src/crypto/v3-kdf.js';
import { CipherError, RekeyError } from '../../../src/errors.js';
import { CBC, GCM, V3_SUITE } from '../../../src/formats/envelope.js';
import { parseEnvelope } from '../../../src/formats/parse.js';
import { dataKeyBytes, resolvedV3Objects, v2Vectors } from '../../helpers/vectors.js';
import { cbcSeal, collect, cut, gcmSeal, rejectsWith } from '../../helpers/crypto.js';

const CHUNK = 64 * 1024;
const WINDOW = 4 * CHUNK;
let pool: CipherPool;

before(() => {
  pool = new CipherPool({ threads: 2, chunkSize: CHUNK, maxInFlightBytes: WINDOW });
});

after(async () => {
  await pool.close();
});

async function* pieces(parts: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield part;
}

interface Material {
  readonly key: Buffer;
  readonly iv: Buffer;
  readonly cbcIv: Buffer;
  readonly messageId: Buffer;
}
const material = (): Material => ({ key: randomBytes(32), iv: randomBytes(12), cbcIv: randomBytes(16), messageId: randomBytes(28) });

/** Reference bodies from one-shot node:crypto, independent of the streaming code under test. */
function sealed(format: 'v2' | 'v3' | 'cbc', m: Material, plain: Buffer): Buffer {
  if (format === 'cbc') return cbcSeal(m.key, m.cbcIv, plain);
  if (format === 'v2') return gcmSeal(m.key, m.iv, plain);
  return gcmSeal(deriveV3ContentKey(m.key, m.messageId), Buffer.alloc(12, 1), plain, Buffer.from([0x00, 0x73]));
}

function decryptSpec(format: 'v2' | 'v3' | 'cbc', m: Material, expectedLength?: number): DecryptSpec {
  const key = DataKey.adopt(Buffer.from(m.key));
  const expected = expectedLength === undefined ? {} : { expectedLength };
  if (format === 'cbc') return { cipher: CBC, key, iv: m.cbcIv, ...expected };
  if (format === 'v2') return { cipher: GCM, key, iv: m.iv, ...expected };
  return { cipher: V3_SUITE, key, messageId: m.messageId, commitment: deriveV3Commitment(m.key, m.messageId), ...expected };
}

function encryptSpec(format: 'v2' | 'v3', m: Material): EncryptSpec {
  const key = DataKey.adopt(Buffer.from(m.key));
  return format === 'v2' ? { cipher: GCM, key, iv: m.iv } : { cipher: V3_SUITE, key, messageId: m.messageId };
}

describe('CipherPool with the known-answer vectors', () => {
  for (const v of v2Vectors.filter((x) => x.metadata !== undefined)) {
    it(`${v.id}: decrypts in a thread`, async () => {
      const spec = decryptSpecFor(parseEnvelope(v.metadata ?? {}), DataKey.adopt(dataKeyBytes(v)));
      const stream = pool.decrypt(pieces(cut(Buffer.from(v.ciphertext_hex, 'hex'), [7])), spec);
      assert.equal((await collect(stream)).toString('hex'), v.plaintext_hex);
      assert.deepEqual(await stream.done, { bytesIn: v.ciphertext_hex.length / 2, bytesOut: v.plaintext_hex.length / 2 });
    });
  }

  const [good, wrong] = resolvedV3Objects();
  it(`${good?.id}: decrypts in a thread`, async () => {
    const spec = decryptSpecFor(parseEnvelope(good?.metadata ?? {}), DataKey.adopt(dataKeyBytes(good ?? {})));
    assert.equal((await collect(pool.decrypt(pieces([Buffer.from(good?.ciphertext_hex ?? '', 'hex')]), spec))).toString('hex'), good?.plaintext_hex);
  });

  it(`${wrong?.id}: fails in the thread as commitment-mismatch, with no output`, async () => {
    const spec = decryptSpecFor(parseEnvelope(wrong?.metadata ?? {}), DataKey.adopt(dataKeyBytes(wrong ?? {})));
    const stream = pool.decrypt(pieces([Buffer.from(wrong?.ciphertext_hex ?? '', 'hex')]), spec);
    let outBytes = 0;
    stream.on('data', (d: Buffer) => (outBytes += d.length));
    const err = await rejectsWith(collect(stream), 'commitment-mismatch');
    assert.ok(err instanceof CipherError);
    assert.equal(outBytes, 0);
    await rejectsWith(stream.done, 'commitment-mismatch');
  });
});

describe('CipherPool round trips and failures (fast-check)', () => {
  const size = fc.oneof(fc.constantFrom(0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, WINDOW + 17), fc.integer({ min: 0, max: 400_000 }));
  const cuts = fc.array(fc.nat({ max: 400_100 }), { maxLength: 10 });

  it('encrypts, re-encrypts and decrypts any size through any chunking of the source', async () => {
    await fc.assert(
      fc.asyncProperty(size, cuts, fc.constantFrom<'v2' | 'v3' | 'cbc'>('v2', 'v3', 'cbc'), fc.constantFrom<'v2' | 'v3'>('v2', 'v3'), async (n, points, from, to) => {
        const plain = randomBytes(n);
        const old = material();
        const body = sealed(from, old, plain);
        const fresh = material();
        const rewritten = await collect(pool.reencrypt(pieces(cut(body, points)), { decrypt: decryptSpec(from, old, n), encrypt: encryptSpec(to, fresh) }));
        assert.deepEqual(rewritten, sealed(to, fresh, plain));
        if (from !== 'cbc') {
          assert.deepEqual(await collect(pool.encrypt(Readable.from(cut(plain, points).map((p) => Buffer.from(p))), encryptSpec(from, old))), body);
        }
        assert.deepEqual(await collect(pool.decrypt(pieces(cut(rewritten, points)), decryptSpec(to, fresh, n))), plain);
      }),
      { numRuns: 30 },
    );
  });

  it('reports a bit flip anywhere in ciphertext or tag as tag-mismatch, never as success', async () => {
    await fc.assert(
      fc.asyncProperty(size, fc.nat(), fc.nat({ max: 7 }), cuts, fc.constantFrom<'v2' | 'v3'>('v2', 'v3'), async (n, at, bit, points, format) => {
        const m = material();
        const body = sealed(format, m, randomBytes(n));
        const index = at % body.length;
        body[index] = (body[index] ?? 0) ^ (1 << bit);
        await rejectsWith(collect(pool.reencrypt(pieces(cut(body, points)), { decrypt: decryptSpec(format, m), encrypt: encryptSpec('v3', material()) })), 'tag-mismatch');
      }),
      { numRuns: 30 },
    );
  });

  it('reports truncation as truncated when the length is recorded, and a body shorter than a tag always', async () => {
    const m = material();
    const body = sealed('v2', m, randomBytes(3 * CHUNK));
    await rejectsWith(collect(pool.decrypt(pieces([body.subarray(0, body.length - 1)]), decryptSpec('v2', m, 3 * CHUNK))), 'truncated');
    await rejectsWith(collect(pool.decrypt(pieces([body.subarray(0, 15)]), decryptSpec('v2', m))), 'truncated');
    await rejectsWith(collect(pool.decrypt(pieces([]), decryptSpec('v3', m))), 'truncated');
    assert.deepEqual(await pool.threadStreamCounts(), [0, 0], 'failed streams leave no thread state');
  });
});

describe('CipherPool stream handling', () => {
  it('multiplexes many concurrent streams over its threads', async () => {
    const jobs = Array.from({ length: 24 }, (_, i) => {
      const m = material();
      const plain = randomBytes(1000 + i * 7919);
      const stream = pool.encrypt(pieces(cut(plain, [i * 101, i * 977])), encryptSpec(i % 2 ? 'v2' : 'v3', m));
      return { m, plain, stream, format: i % 2 ? ('v2' as const) : ('v3' as const) };
    });
    const busy = pool.utilisation();
    assert.equal(busy.reduce((a, u) => a + u.activeStreams, 0), 24);
    assert.ok(busy.every((u) => u.alive && u.activeStreams === 12));
    const bodies = await Promise.all(jobs.map((j) => collect(j.stream)));
    for (const [i, j] of jobs.entries()) assert.deepEqual(bodies[i], sealed(j.format, j.m, j.plain));
    assert.deepEqual(await pool.threadStreamCounts(), [0, 0]);
    const after = pool.utilisation();
    assert.ok(after.every((u) => u.activeStreams === 0 && u.busyMs > 0 && u.utilisation > 0 && u.utilisation <= 1));
  });

  /**
   * Copies every chunk, then releases it, as the part writer does. A released buffer that the pool reused
   * was transferred to a thread again, which detaches it here: its byteLength is then 0.
   */
  async function copyAndRelease(stream: ReturnType<CipherPool['decrypt']>): Promise<{ body: Buffer; chunks: number; reused: number }> {
    const copies: Buffer[] = [];
    const released: ArrayBufferLike[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      copies.push(Buffer.from(chunk));
      released.push(chunk.buffer);
      stream.release(chunk);
    }
    return { body: Buffer.concat(copies), chunks: copies.length, reused: released.filter((b) => b.byteLength === 0).length };
  }

  it('hands re-encrypted output back in the chunk buffers it recycles, once the consumer releases them', async () => {
    const plain = randomBytes(64 * CHUNK + 100);
    const old = material();
    const fresh = material();
    const stream = pool.reencrypt(pieces(cut(sealed('v2', old, plain), [CHUNK * 3 + 5])), { decrypt: decryptSpec('v2', old), encrypt: encryptSpec('v3', fresh) });
    const { body, chunks, reused } = await copyAndRelease(stream);
    assert.deepEqual(body, sealed('v3', fresh, plain), 'the output is byte-identical to a one-shot encryption');
    assert.ok(chunks >= 64);
    assert.ok(reused >= chunks / 2, `${reused} of ${chunks} released chunks carried input again`);
  });

  it('never recycles the output of a stream that only decrypts: plaintext stays out of the chunks sent to threads', async () => {
    const plain = randomBytes(16 * CHUNK);
    const m = material();
    const { body, chunks, reused } = await copyAndRelease(pool.decrypt(pieces([sealed('v2', m, plain)]), decryptSpec('v2', m)));
    assert.deepEqual(body, plain);
    assert.ok(chunks >= 16);
    assert.equal(reused, 0, 'no plaintext chunk went back to a thread');
  });

  it('moves keys to the thread: the caller copies are zeroed at once', () => {
    const oldBytes = randomBytes(32);
    const newBytes = randomBytes(32);
    const decrypt = { cipher: GCM, key: DataKey.adopt(oldBytes), iv: randomBytes(12) } as const;
    const encrypt = { cipher: GCM, key: DataKey.adopt(newBytes), iv: randomBytes(12) } as const;
    const stream = pool.reencrypt(pieces([]), { decrypt, encrypt });
    assert.ok(decrypt.key.destroyed && encrypt.key.destroyed);
    assert.ok(oldBytes.every((b) => b === 0) && newBytes.every((b) => b === 0));
    stream.destroy();
  });

  it('refuses a destroyed key without starting a stream', () => {
    const key = DataKey.generate();
    key.destroy();
    const other = DataKey.generate();
    assert.throws(() => pool.reencrypt(pieces([]), { decrypt: { cipher: GCM, key, iv: randomBytes(12) }, encrypt: { cipher: GCM, key: other, iv: randomBytes(12) } }), CipherError);
    assert.ok(other.destroyed);
  });

  it('bounds the bytes pulled from the source when nobody reads the output', async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      const block = randomBytes(10_000);
      for (;;) {
        pulled += block.length;
        yield block;
      }
    }
    const stream = pool.encrypt(endless(), encryptSpec('v2', material()));
    await sleep(300);
    const first = pulled;
    await sleep(300);
    assert.equal(pulled, first, 'the source is not read further while the output is not consumed');
    assert.ok(first <= WINDOW + 3 * CHUNK, `pulled ${first} bytes`);
    let read = 0;
    for await (const piece of stream) {
      read += (piece as Buffer).length;
      if (read > 20 * CHUNK) break;
    }
    assert.ok(pulled > 20 * CHUNK, 'reading resumes the source');
    assert.ok(stream.destroyed);
    await rejectsWith(stream.done, 'cancelled');
  });

  it('releases the thread state and stops the source when the output is destroyed', async () => {
    let finalised = false;
    async function* endless(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) yield randomBytes(CHUNK);
      } finally {
        finalised = true;
      }
    }
    const m = material();
    const stream = pool.reencrypt(endless(), { decrypt: decryptSpec('v2', m), encrypt: encryptSpec('v2', material()) });
    await new Promise((resolve) => stream.once('data', resolve));
    assert.deepEqual((await pool.threadStreamCounts()).reduce((a, b) => a + b, 0), 1);
    stream.destroy();
    await rejectsWith(stream.done, 'cancelled');
    for (let i = 0; i < 50 && !finalised; i++) await sleep(10);
    assert.ok(finalised, 'the source generator was closed');
    assert.deepEqual(await pool.threadStreamCounts(), [0, 0]);
  });

  it('passes a source failure through and releases the thread state', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield randomBytes(CHUNK + 5);
      throw new Error('socket reset');
    }
    const stream = pool.encrypt(failing(), encryptSpec('v2', material()));
    await assert.rejects(collect(stream), /socket reset/);
    assert.deepEqual(await pool.threadStreamCounts(), [0, 0]);
  });

  it('refuses a source that yields something other than bytes', async () => {
    const stream = pool.encrypt(Readable.from(['text']), encryptSpec('v2', material()));
    await rejectsWith(collect(stream), 'internal');
  });
});

describe('CipherPool lifecycle', () => {
  it('fails the streams of a thread that dies and serves from a new one on next use', async () => {
    const broken = new CipherPool({ threads: 1, threadEntry: new URL('./fixtures/exit-thread.ts', import.meta.url) });
    try {
      await rejectsWith(collect(broken.encrypt(pieces([randomBytes(10)]), encryptSpec('v2', material()))), 'internal');
      assert.equal(broken.utilisation()[0]?.alive, false, 'a dead thread is not respawned in a loop');
      await rejectsWith(collect(broken.encrypt(pieces([randomBytes(10)]), encryptSpec('v2', material()))), 'internal');
    } finally {
      await broken.close();
    }
  });

  it('closes: open streams fail as cancelled, threads exit, new streams are refused', async () => {
    const local = new CipherPool({ threads: 2 });
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (;;) yield randomBytes(CHUNK);
    }
    const open = local.encrypt(endless(), encryptSpec('v2', material()));
    const failed = new Promise((resolve) => open.once('error', resolve));
    await new Promise((resolve) => open.once('data', resolve));
    await local.close();
    await rejectsWith(open.done, 'cancelled');
    assert.ok((await failed) instanceof RekeyError);
    assert.ok(local.utilisation().every((u) => !u.alive && u.activeStreams === 0));
    const key = DataKey.generate();
    assert.throws(() => local.encrypt(pieces([]), { cipher: GCM, key, iv: randomBytes(12) }), (e: unknown) => e instanceof RekeyError && e.reason === 'cancelled');
    assert.ok(key.destroyed);
    await local.close();
  });
});
