import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GcmDecryptCore, GcmEncryptCore } from '../../../src/crypto/cores.js';
import { DataKey } from '../../../src/crypto/data-key.js';
import { decryptSpecFor } from '../../../src/crypto/specs.js';
import { CipherTransform, createDecryptStream, createEncryptStream } from '../../../src/crypto/streams.js';
import { deriveV3Commitment, deriveV3ContentKey } from '../../../src/crypto/v3-kdf.js';
import { CipherError } from '../../../src/errors.js';
import { GCM, V3_SUITE } from '../../../src/formats/envelope.js';
import { parseEnvelope } from '../../../src/formats/parse.js';
import { dataKeyBytes, gcmFile, resolvedV3Objects, v2Vectors, v3File } from '../../helpers/vectors.js';
import { cut, rejectsWith, runTransform } from '../../helpers/crypto.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

describe('AES-GCM shared KATs (aes_gcm_shared_kats.json)', () => {
  for (const v of [...gcmFile.vectors, ...gcmFile.nist_vectors]) {
    const aad = v.aad === '' ? {} : { aad: hex(v.aad) };
    it(`${v.comment} ${v.key.length * 4}-bit key, ${v.pt.length / 2}-byte plaintext: decrypts`, async () => {
      const body = Buffer.concat([hex(v.ct), hex(v.tag)]);
      const plain = await runTransform(new CipherTransform(new GcmDecryptCore(hex(v.key), hex(v.iv), aad)), cut(body, [3, 17]));
      assert.equal(plain.toString('hex'), v.pt.toLowerCase());
    });
    it(`${v.comment} ${v.key.length * 4}-bit key, ${v.pt.length / 2}-byte plaintext: encrypts`, async () => {
      const body = await runTransform(new CipherTransform(new GcmEncryptCore(hex(v.key), hex(v.iv), aad)), [hex(v.pt)]);
      assert.equal(body.toString('hex'), (v.ct + v.tag).toLowerCase());
    });
  }
});

describe('S3EC V1/V2 content KATs (s3ec_v2_content_kats.json)', () => {
  for (const v of v2Vectors) {
    const body = hex(v.ciphertext_hex);
    if (v.metadata !== undefined) {
      it(`${v.id}: decrypts from its metadata`, async () => {
        const spec = decryptSpecFor(parseEnvelope(v.metadata ?? {}), DataKey.adopt(dataKeyBytes(v)));
        const plain = await runTransform(createDecryptStream(spec), cut(body, [1, 16, 33]));
        assert.equal(plain.toString('hex'), v.plaintext_hex);
      });
    }
    if (v.direction?.startsWith('encrypt')) {
      it(`${v.id}: encrypts to the expected body with the pinned IV`, async () => {
        const spec = { cipher: GCM, key: DataKey.adopt(dataKeyBytes(v)), iv: hex(v.iv_hex ?? '') } as const;
        const out = await runTransform(createEncryptStream(spec), v.plaintext_hex === '' ? [] : [hex(v.plaintext_hex)]);
        assert.equal(out.toString('hex'), v.ciphertext_hex);
      });
      it(`${v.id}: decrypts with the pinned IV`, async () => {
        const spec = { cipher: GCM, key: DataKey.adopt(dataKeyBytes(v)), iv: hex(v.iv_hex ?? '') } as const;
        assert.equal((await runTransform(createDecryptStream(spec), [body])).toString('hex'), v.plaintext_hex);
      });
    }
  }
});

describe('S3EC V3 KATs (s3ec_v3_commit_kats.json)', () => {
  for (const [i, v] of v3File.hkdf_kats.entries()) {
    it(`HKDF-SHA512 KAT #${i + 1}`, () => {
      const key = hex(v.plaintext_data_key_hex);
      const id = hex(v.message_id_hex);
      assert.equal(deriveV3ContentKey(key, id).toString('hex'), v.derived_encryption_key_hex);
      assert.equal(deriveV3Commitment(key, id).toString('hex'), v.key_commitment_hex);
    });
  }

  const [good, wrongCommitment, invalidCommitment] = resolvedV3Objects();

  it(`${good?.id}: decrypts, and encrypting its plaintext under the same message id gives its body`, async () => {
    const envelope = parseEnvelope(good?.metadata ?? {});
    const body = hex(good?.ciphertext_hex ?? '');
    const plain = await runTransform(createDecryptStream(decryptSpecFor(envelope, DataKey.adopt(dataKeyBytes(good ?? {})))), cut(body, [5, 40, 60]));
    assert.equal(plain.toString('hex'), good?.plaintext_hex);
    assert.ok(envelope.version === 'v3');
    const again = await runTransform(
      createEncryptStream({ cipher: V3_SUITE, key: DataKey.adopt(dataKeyBytes(good ?? {})), messageId: envelope.messageId }),
      [plain],
    );
    assert.deepEqual(again, body);
  });

  it(`${wrongCommitment?.id}: fails as commitment-mismatch before any plaintext exists`, () => {
    const key = DataKey.adopt(dataKeyBytes(wrongCommitment ?? {}));
    const spec = decryptSpecFor(parseEnvelope(wrongCommitment?.metadata ?? {}), key);
    assert.throws(() => createDecryptStream(spec), (e: unknown) => e instanceof CipherError && e.reason === 'commitment-mismatch');
    assert.ok(key.destroyed, 'the key is zeroed even when the stream is refused');
  });

  it(`${invalidCommitment?.id}: never reaches the cipher (bad-metadata)`, () => {
    assert.throws(() => parseEnvelope(invalidCommitment?.metadata ?? {}), (e: unknown) => e instanceof Error && 'reason' in e && e.reason === 'bad-metadata');
  });

  it('a zero IV (one PHP revision) does not decrypt the Go vector: tag-mismatch', async () => {
    const envelope = parseEnvelope(good?.metadata ?? {});
    assert.ok(envelope.version === 'v3');
    const contentKey = deriveV3ContentKey(dataKeyBytes(good ?? {}), envelope.messageId);
    const core = new GcmDecryptCore(contentKey, Buffer.alloc(12), { aad: Buffer.from([0x00, 0x73]) });
    await rejectsWith(runTransform(new CipherTransform(core), [hex(good?.ciphertext_hex ?? '')]), 'tag-mismatch');
  });
});
