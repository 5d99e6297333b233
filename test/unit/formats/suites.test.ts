import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContentSuite } from '../../../src/formats/suites.js';
import { NEW_CONTENT_SUITE, SUITES, kdfInfo, tagLengthBits } from '../../../src/formats/suites.js';

const ALL: readonly ContentSuite[] = Object.values(SUITES);

describe('the content-suite table', () => {
  it('names each suite by the value its metadata stores', () => {
    for (const [cipher, suite] of Object.entries(SUITES)) assert.equal(suite.cipher, cipher);
    assert.deepEqual(ALL.map((s) => s.id).sort(), [0x0070, 0x0072, 0x0073]);
  });

  it('writes only authenticated suites, with a 16-byte tag recorded as 128 bits', () => {
    for (const suite of ALL.filter((s) => s.writable)) {
      assert.equal(suite.mode, 'gcm');
      assert.equal(tagLengthBits(suite), '128');
    }
    assert.equal(SUITES['AES/CBC/PKCS5Padding'].writable, false);
    assert.deepEqual([NEW_CONTENT_SUITE.v2.cipher, NEW_CONTENT_SUITE.v3.cipher], ['AES/GCM/NoPadding', '115']);
  });

  it('gives the committing suite a fixed IV of its IV length, its id as AAD and as the HKDF info prefix', () => {
    const v3 = SUITES['115'];
    assert.equal(v3.fixedIv.byteLength, v3.ivLength);
    assert.deepEqual([...v3.aad], [0x00, 0x73]);
    assert.deepEqual(kdfInfo(v3, v3.kdf.contentKeyLabel), Buffer.concat([Buffer.from([0x00, 0x73]), Buffer.from('DERIVEKEY')]));
    assert.deepEqual(kdfInfo(v3, v3.kdf.commitmentLabel), Buffer.concat([Buffer.from([0x00, 0x73]), Buffer.from('COMMITKEY')]));
  });
});
