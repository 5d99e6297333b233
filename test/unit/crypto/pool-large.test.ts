import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { DataKey } from '../../../src/crypto/data-key.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { deriveV3Commitment } from '../../../src/crypto/v3-kdf.js';
import { GCM, V3_SUITE } from '../../../src/formats/envelope.js';

const GiB = 1024 ** 3;
const BLOCK = 1024 * 1024;
/** CI streams 512 MiB; REKEY_LONG_TESTS=1 streams 4 GiB to show memory does not grow with size. */
const TOTAL = process.env['REKEY_LONG_TESTS'] === '1' ? 4 * GiB : GiB / 2;

/** Block i is a fixed random MiB whose first 8 bytes hold i, so order and content are both checked. */
class Pattern {
  readonly #base = randomBytes(BLOCK);

  async *blocks(total: number): AsyncGenerator<Uint8Array> {
    for (let i = 0; i * BLOCK < total; i++) {
      const block = Buffer.allocUnsafe(Math.min(BLOCK, total - i * BLOCK));
      this.#base.copy(block);
      if (block.length >= 8) block.writeBigUInt64LE(BigInt(i));
      yield block;
    }
  }

  /** Compares `piece`, found at `offset` of the stream, with the pattern without materialising it. */
  matches(piece: Buffer, offset: number): boolean {
    for (let at = 0; at < piece.length; ) {
      const position = offset + at;
      const block = Math.floor(position / BLOCK);
      const within = position % BLOCK;
      const n = Math.min(piece.length - at, BLOCK - within);
      const header = Buffer.alloc(8);
      header.writeBigUInt64LE(BigInt(block));
      const expected = Buffer.concat([header.subarray(Math.min(within, 8)), this.#base.subarray(Math.max(within, 8), within + n)]);
      if (!piece.subarray(at, at + n).equals(expected.subarray(0, n))) return false;
      at += n;
    }
    return true;
  }
}

describe(`CipherPool streams ${TOTAL / GiB} GiB generated on the fly`, () => {
  it('encrypts (V2), re-encrypts (V2 → V3) and decrypts (V3) it end to end in bounded memory', async (t) => {
    const pool = new CipherPool({ threads: 2 });
    const pattern = new Pattern();
    const first = { key: randomBytes(32), iv: randomBytes(12) };
    const second = { key: randomBytes(32), messageId: randomBytes(28) };
    const delay = monitorEventLoopDelay({ resolution: 10 });
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 50);
    delay.enable();
    try {
      const encrypted = pool.encrypt(pattern.blocks(TOTAL), { cipher: GCM, key: DataKey.adopt(Buffer.from(first.key)), iv: first.iv });
      const reencrypted = pool.reencrypt(encrypted, {
        decrypt: { cipher: GCM, key: DataKey.adopt(Buffer.from(first.key)), iv: first.iv, expectedLength: TOTAL },
        encrypt: { cipher: V3_SUITE, key: DataKey.adopt(Buffer.from(second.key)), messageId: second.messageId },
      });
      const decrypted = pool.decrypt(reencrypted, {
        cipher: V3_SUITE,
        key: DataKey.adopt(Buffer.from(second.key)),
        messageId: second.messageId,
        commitment: deriveV3Commitment(second.key, second.messageId),
        expectedLength: TOTAL,
      });
      let offset = 0;
      for await (const piece of decrypted as AsyncIterable<Buffer>) {
        assert.ok(pattern.matches(piece, offset), `plaintext differs near byte ${offset}`);
        offset += piece.length;
      }
      assert.equal(offset, TOTAL);
      assert.deepEqual(await encrypted.done, { bytesIn: TOTAL, bytesOut: TOTAL + 16 });
      assert.deepEqual(await reencrypted.done, { bytesIn: TOTAL + 16, bytesOut: TOTAL + 16 });
      assert.deepEqual(await decrypted.done, { bytesIn: TOTAL + 16, bytesOut: TOTAL });
    } finally {
      delay.disable();
      clearInterval(sampler);
      await pool.close();
    }
    const growth = rssPeak - rssBefore;
    t.diagnostic(`RSS growth ${Math.round(growth / 2 ** 20)} MiB, longest event-loop delay ${(delay.max / 1e6).toFixed(1)} ms`);
    assert.ok(growth < 512 * 1024 * 1024, `RSS grew by ${Math.round(growth / 2 ** 20)} MiB`);
    const maxDelayMs = delay.max / 1e6;
    assert.ok(maxDelayMs < 1000, `event loop stalled for ${maxDelayMs} ms`);
  });
});
