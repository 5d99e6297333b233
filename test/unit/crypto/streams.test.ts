import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DataKey } from '../../../src/crypto/data-key.js';
import type { DecryptSpec, EncryptSpec } from '../../../src/crypto/specs.js';
import { createDecryptStream, createEncryptStream, createReencryptStream } from '../../../src/crypto/streams.js';
import { deriveV3Commitment } from '../../../src/crypto/v3-kdf.js';
import { CBC, GCM, V3_SUITE } from '../../../src/formats/envelope.js';
import { cbcSeal, cut, rejectsWith, runTransform } from '../../helpers/crypto.js';

/** Sizes around tag, block and chunk boundaries, plus random ones. */
const size = fc.oneof(
  fc.constantFrom(0, 1, 15, 16, 17, 31, 32, 33, 4095, 4096, 4097, 65535, 65536, 65537),
  fc.integer({ min: 0, max: 200_000 }),
);
const cuts = fc.array(fc.nat({ max: 200_100 }), { maxLength: 12 });
const RUNS = { numRuns: 60 };

interface Material {
  readonly key: Buffer;
  readonly iv: Buffer;
  readonly messageId: Buffer;
}

function material(): Material {
  return { key: randomBytes(32), iv: randomBytes(12), messageId: randomBytes(28) };
}

type Format = 'v2' | 'v3';

function encryptSpec(format: Format, m: Material): EncryptSpec {
  const key = DataKey.adopt(Buffer.from(m.key));
  return format === 'v2' ? { cipher: GCM, key, iv: m.iv } : { cipher: V3_SUITE, key, messageId: m.messageId };
}

function decryptSpec(format: Format, m: Material, extra: { expectedLength?: number; commitment?: Buffer } = {}): DecryptSpec {
  const key = DataKey.adopt(Buffer.from(m.key));
  const expected = extra.expectedLength === undefined ? {} : { expectedLength: extra.expectedLength };
  if (format === 'v2') return { cipher: GCM, key, iv: m.iv, ...expected };
  return { cipher: V3_SUITE, key, messageId: m.messageId, commitment: extra.commitment ?? deriveV3Commitment(m.key, m.messageId), ...expected };
}

async function seal(format: Format, m: Material, plain: Buffer, points: number[] = []): Promise<Buffer> {
  return runTransform(createEncryptStream(encryptSpec(format, m)), cut(plain, points));
}

for (const format of ['v2', 'v3'] as const) {
  describe(`${format} GCM streams`, () => {
    it('round-trip any size through any chunking, with and without the recorded length', async () => {
      await fc.assert(
        fc.asyncProperty(size, cuts, cuts, fc.boolean(), async (n, encCuts, decCuts, withLength) => {
          const m = material();
          const plain = randomBytes(n);
          const body = await seal(format, m, plain, encCuts);
          assert.equal(body.length, n + 16);
          const spec = decryptSpec(format, m, withLength ? { expectedLength: n } : {});
          assert.deepEqual(await runTransform(createDecryptStream(spec), cut(body, decCuts)), plain);
        }),
        RUNS,
      );
    });

    it('reject any single bit flip in ciphertext or tag as tag-mismatch', async () => {
      await fc.assert(
        fc.asyncProperty(size, fc.nat(), fc.nat({ max: 7 }), cuts, async (n, at, bit, decCuts) => {
          const m = material();
          const body = await seal(format, m, randomBytes(n));
          const index = at % body.length;
          body[index] = (body[index] ?? 0) ^ (1 << bit);
          await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m)), cut(body, decCuts)), 'tag-mismatch');
        }),
        RUNS,
      );
    });

    it('reject truncation: short of a tag → truncated; otherwise tag-mismatch, or truncated when the length is recorded', async () => {
      await fc.assert(
        fc.asyncProperty(size, fc.integer({ min: 1, max: 100_000 }), async (n, drop) => {
          const m = material();
          const body = await seal(format, m, randomBytes(n));
          const short = body.subarray(0, Math.max(0, body.length - drop));
          const unrecorded = short.length < 16 ? 'truncated' : 'tag-mismatch';
          await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m)), [short]), unrecorded);
          await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m, { expectedLength: n })), [short]), 'truncated');
        }),
        RUNS,
      );
    });

    it('reject appended bytes and a recorded length that differs from the body', async () => {
      const m = material();
      const body = await seal(format, m, randomBytes(100));
      await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m)), [body, Buffer.from([0])]), 'tag-mismatch');
      await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m, { expectedLength: 99 })), [body]), 'truncated');
      await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m, { expectedLength: 101 })), [body]), 'truncated');
    });

    it('reject a wrong data key', async () => {
      const m = material();
      const body = await seal(format, m, randomBytes(1000));
      const wrong = { ...m, key: randomBytes(32) };
      if (format === 'v2') {
        await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, wrong)), [body]), 'tag-mismatch');
      } else {
        const spec = decryptSpec(format, wrong, { commitment: deriveV3Commitment(m.key, m.messageId) });
        assert.throws(() => createDecryptStream(spec), (e: unknown) => e instanceof Error && 'reason' in e && e.reason === 'commitment-mismatch');
      }
    });

    it('refuse more plaintext than GCM allows as too-large', async () => {
      const m = material();
      await rejectsWith(runTransform(createEncryptStream(encryptSpec(format, m), { maxPlaintextLength: 1000 }), [randomBytes(600), randomBytes(401)]), 'too-large');
      const body = await seal(format, m, randomBytes(1001));
      await rejectsWith(runTransform(createDecryptStream(decryptSpec(format, m), { maxPlaintextLength: 1000 }), [body]), 'too-large');
    });
  });
}

describe('v2 IV and v3 message id / commitment flips', () => {
  it('an IV flip fails as tag-mismatch', async () => {
    await fc.assert(
      fc.asyncProperty(size, fc.nat({ max: 95 }), async (n, bit) => {
        const m = material();
        const body = await seal('v2', m, randomBytes(n));
        const iv = Buffer.from(m.iv);
        iv[bit >> 3] = (iv[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        await rejectsWith(runTransform(createDecryptStream(decryptSpec('v2', { ...m, iv })), [body]), 'tag-mismatch');
      }),
      RUNS,
    );
  });

  it('a message id or commitment flip fails as commitment-mismatch before decrypting', () => {
    fc.assert(
      fc.property(fc.nat({ max: 28 * 8 - 1 }), fc.boolean(), (bit, flipId) => {
        const m = material();
        const commitment = deriveV3Commitment(m.key, m.messageId);
        const target = flipId ? Buffer.from(m.messageId) : commitment;
        target[bit >> 3] = (target[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        const spec = decryptSpec('v3', flipId ? { ...m, messageId: target } : m, { commitment });
        assert.throws(() => createDecryptStream(spec), (e: unknown) => e instanceof Error && 'reason' in e && e.reason === 'commitment-mismatch');
        assert.ok(spec.key.destroyed);
      }),
      { numRuns: 200 },
    );
  });
});

describe('legacy CBC decryption', () => {
  const cbcSpec = (key: Buffer, iv: Buffer, expectedLength?: number): DecryptSpec => ({
    cipher: CBC,
    key: DataKey.adopt(Buffer.from(key)),
    iv,
    ...(expectedLength === undefined ? {} : { expectedLength }),
  });

  it('decrypts AES-128 and AES-256 bodies of any size through any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(size, cuts, fc.constantFrom(16, 32), async (n, points, keyLength) => {
        const key = randomBytes(keyLength);
        const iv = randomBytes(16);
        const plain = randomBytes(n);
        const body = cbcSeal(key, iv, plain);
        assert.deepEqual(await runTransform(createDecryptStream(cbcSpec(key, iv, n)), cut(body, points)), plain);
      }),
      RUNS,
    );
  });

  it('rejects broken padding as bad-padding', async () => {
    await fc.assert(
      fc.asyncProperty(size, async (n) => {
        const key = randomBytes(32);
        const iv = randomBytes(16);
        const body = cbcSeal(key, iv, randomBytes(n));
        // Flipping 0x10 in the byte that feeds the last padding byte turns any pad value 1..16 into an invalid one.
        const source = body.length > 16 ? body : iv;
        const index = body.length > 16 ? body.length - 17 : 15;
        const flipped = Buffer.from(source);
        flipped[index] = (flipped[index] ?? 0) ^ 0x10;
        const spec = body.length > 16 ? cbcSpec(key, iv) : cbcSpec(key, flipped);
        await rejectsWith(runTransform(createDecryptStream(spec), [body.length > 16 ? flipped : body]), 'bad-padding');
      }),
      RUNS,
    );
  });

  it('rejects bodies that are not whole blocks, and a length other than the recorded one, as truncated', async () => {
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const body = cbcSeal(key, iv, randomBytes(40));
    await rejectsWith(runTransform(createDecryptStream(cbcSpec(key, iv)), [body.subarray(0, 47)]), 'truncated');
    await rejectsWith(runTransform(createDecryptStream(cbcSpec(key, iv)), []), 'truncated');
    await rejectsWith(runTransform(createDecryptStream(cbcSpec(key, iv, 41)), [body]), 'truncated');
    await rejectsWith(runTransform(createDecryptStream(cbcSpec(key, iv, 39)), [body]), 'truncated');
  });

  it('refuses a key that is not an AES key as wrong-key', () => {
    assert.throws(() => createDecryptStream(cbcSpec(randomBytes(20), randomBytes(16))), (e: unknown) => e instanceof Error && 'reason' in e && e.reason === 'wrong-key');
  });
});

describe('re-encryption in one pass', () => {
  it('turns V1 CBC, V2 and V3 bodies into V2 or V3 bodies that decrypt to the same plaintext', async () => {
    await fc.assert(
      fc.asyncProperty(size, cuts, fc.constantFrom('cbc', 'v2', 'v3'), fc.constantFrom<Format>('v2', 'v3'), async (n, points, from, to) => {
        const plain = randomBytes(n);
        const old = material();
        const oldIv = from === 'cbc' ? randomBytes(16) : old.iv;
        const body = from === 'cbc' ? cbcSeal(old.key, oldIv, plain) : await seal(from, old, plain);
        const decrypt: DecryptSpec = from === 'cbc' ? { cipher: CBC, key: DataKey.adopt(Buffer.from(old.key)), iv: oldIv } : decryptSpec(from, old);
        const fresh = material();
        const rewritten = await runTransform(createReencryptStream(decrypt, encryptSpec(to, fresh)), cut(body, points));
        assert.equal(rewritten.length, n + 16);
        assert.deepEqual(await runTransform(createDecryptStream(decryptSpec(to, fresh)), [rewritten]), plain);
      }),
      RUNS,
    );
  });

  it('never ends cleanly when the old body is altered', async () => {
    const old = material();
    const body = await seal('v2', old, randomBytes(5000));
    body[4000] = (body[4000] ?? 0) ^ 1;
    await rejectsWith(runTransform(createReencryptStream(decryptSpec('v2', old), encryptSpec('v3', material())), [body]), 'tag-mismatch');
  });

  it('zeroes the new key when the old key is refused', () => {
    const old = material();
    const fresh = encryptSpec('v2', material());
    assert.throws(() => createReencryptStream(decryptSpec('v3', old, { commitment: Buffer.alloc(28) }), fresh));
    assert.ok(fresh.key.destroyed);
  });
});
