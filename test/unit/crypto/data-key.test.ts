import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { format, inspect } from 'node:util';
import { DataKey } from '../../../src/crypto/data-key.js';
import { openDecryptCore, openEncryptCore } from '../../../src/crypto/specs.js';
import { createDecryptStream, createEncryptStream } from '../../../src/crypto/streams.js';
import { deriveV3Commitment } from '../../../src/crypto/v3-kdf.js';
import { CipherError } from '../../../src/errors.js';
import { CBC, GCM, V3_SUITE } from '../../../src/formats/envelope.js';

describe('DataKey', () => {
  it('never shows its bytes when printed, logged or serialised', () => {
    const bytes = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
    const key = DataKey.adopt(bytes);
    const renderings = [
      inspect(key),
      inspect({ nested: { key } }, { depth: 5, showHidden: true }),
      JSON.stringify({ key }),
      String(key),
      `${key}`,
      format('%o %O %j %s', key, key, key, key),
    ];
    for (const text of renderings) {
      assert.ok(!text.includes('0011223344') && !text.includes('ABEiM0RV') && !text.includes(' 17, 34'), text);
      assert.match(text, /redacted/);
    }
    assert.equal(key.length, 32);
  });

  it('zeroes the adopted buffer on destroy and refuses use afterwards', () => {
    const bytes = randomBytes(32);
    const key = DataKey.adopt(bytes);
    key.destroy();
    assert.ok(key.destroyed);
    assert.ok(bytes.every((b) => b === 0));
    assert.throws(() => key.use(() => 1), (e: unknown) => e instanceof CipherError && e.reason === 'internal' && !/[0-9a-f]{16}/.test(e.message));
    key.destroy();
  });

  it('detaches into a standalone ArrayBuffer and zeroes its own copy', () => {
    const bytes = randomBytes(32);
    const copy = Buffer.from(bytes);
    const key = DataKey.adopt(bytes);
    const moved = key.detach();
    assert.deepEqual(Buffer.from(moved), copy);
    assert.ok(bytes.every((b) => b === 0));
    assert.ok(key.destroyed);
  });

  it('is consumed by the stream it keys: the caller buffer is zeroed once the cipher exists', () => {
    for (const open of [createEncryptStream, createDecryptStream]) {
      const bytes = randomBytes(32);
      const key = DataKey.adopt(bytes);
      open({ cipher: GCM, key, iv: randomBytes(12) }).destroy();
      assert.ok(key.destroyed);
      assert.ok(bytes.every((b) => b === 0));
    }
  });

  it('cipher setup zeroes the key bytes it was given, as the threads rely on, also when setup fails', () => {
    const zeroed = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0);
    const messageId = randomBytes(28);
    const cases: Array<[string, (key: Uint8Array) => unknown, boolean]> = [
      ['GCM decrypt', (key) => openDecryptCore({ cipher: GCM, key, iv: randomBytes(12) }), true],
      ['CBC decrypt', (key) => openDecryptCore({ cipher: CBC, key, iv: randomBytes(16) }), true],
      ['V3 decrypt', (key) => openDecryptCore({ cipher: V3_SUITE, key, messageId, commitment: deriveV3Commitment(key, messageId) }), true],
      ['V3 decrypt, wrong commitment', (key) => openDecryptCore({ cipher: V3_SUITE, key, messageId, commitment: Buffer.alloc(28) }), false],
      ['GCM encrypt', (key) => openEncryptCore({ cipher: GCM, key, iv: randomBytes(12) }), true],
      ['V3 encrypt', (key) => openEncryptCore({ cipher: V3_SUITE, key, messageId }), true],
    ];
    for (const [label, open, succeeds] of cases) {
      const key = randomBytes(32);
      if (succeeds) open(key);
      else assert.throws(() => open(key), CipherError, label);
      assert.ok(zeroed(key), label);
    }
  });
});
