import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GCM_MAX_PLAINTEXT_LENGTH } from '../../src/crypto/cores.js';
import { RekeyError } from '../../src/errors.js';
import { parseEnvelope, type Envelope } from '../../src/formats/index.js';
import { checkBodyLength } from '../../src/rotate/body-length.js';
import { v2Vectors } from '../helpers/vectors.js';

const gcm = parseEnvelope(v2Vectors.find((v) => v.metadata?.['x-amz-cek-alg'] === 'AES/GCM/NoPadding')!.metadata!);
const cbc: Envelope = { ...gcm, contentCipher: 'AES/CBC/PKCS5Padding' } as Envelope;

function reasonOf(size: number, envelope: Envelope): string {
  try {
    checkBodyLength(size, envelope);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof RekeyError);
    return err.reason;
  }
}

/** The object sizes HEAD reports around the GCM limits; no 64 GiB object needs to exist to check them. */
describe('what an object size alone proves about its body', () => {
  test('GCM bodies: at least the tag, at most 2^36-32 bytes of plaintext plus the tag', () => {
    assert.equal(reasonOf(0, gcm), 'truncated');
    assert.equal(reasonOf(15, gcm), 'truncated');
    assert.equal(reasonOf(16, gcm), 'ok');
    assert.equal(reasonOf(GCM_MAX_PLAINTEXT_LENGTH + 16, gcm), 'ok');
    assert.equal(reasonOf(GCM_MAX_PLAINTEXT_LENGTH + 17, gcm), 'too-large');
    assert.equal(reasonOf(70 * 1024 ** 3, gcm), 'too-large');
  });

  test('a recorded plaintext length beyond the GCM limit, whatever the body', () => {
    assert.equal(reasonOf(116, { ...gcm, unencryptedContentLength: GCM_MAX_PLAINTEXT_LENGTH } as Envelope), 'ok');
    assert.equal(reasonOf(116, { ...gcm, unencryptedContentLength: GCM_MAX_PLAINTEXT_LENGTH + 1 } as Envelope), 'too-large');
    assert.equal(reasonOf(116, { ...cbc, unencryptedContentLength: 2 ** 40 } as Envelope), 'too-large');
  });

  test('CBC bodies have no tag and no GCM limit of their own', () => {
    assert.equal(reasonOf(0, cbc), 'ok');
    assert.equal(reasonOf(70 * 1024 ** 3, cbc), 'ok');
  });
});
