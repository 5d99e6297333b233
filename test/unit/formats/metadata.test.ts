import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormatError } from '../../../src/errors.js';
import { decodeS3MetadataValue, normaliseMetadata } from '../../../src/formats/metadata.js';
import { parseInstructionFile } from '../../../src/formats/instruction-file.js';
import { decodeBase64Field, encodeBase64 } from '../../../src/formats/base64.js';
import { parseContextJson, stringifyContext } from '../../../src/formats/context-json.js';
import { sample } from '../../helpers/vectors.js';

describe('normaliseMetadata', () => {
  it('lowercases keys and strips the x-amz-meta- prefix', () => {
    const meta = normaliseMetadata({ 'X-Amz-Meta-X-Amz-Key-V2': 'a', 'x-amz-iv': 'b', Other: 'c', skipped: undefined });
    assert.deepEqual(meta, { 'x-amz-key-v2': 'a', 'x-amz-iv': 'b', other: 'c' });
  });

  it('is idempotent', () => {
    const once = normaliseMetadata({ 'X-Amz-Meta-Nonascii': '=?UTF-8?B?w4PChE3Dg8KEWsODwpXDg8KRIFMz?=' });
    assert.deepEqual(normaliseMetadata(once), once);
  });

  it('refuses two spellings of one key with different values', () => {
    assert.throws(
      () => normaliseMetadata({ 'x-amz-meta-x-amz-iv': 'a', 'X-Amz-Iv': 'b' }),
      (e: unknown) => e instanceof FormatError && e.reason === 'bad-metadata',
    );
    assert.deepEqual(normaliseMetadata({ 'x-amz-meta-x-amz-iv': 'a', 'X-Amz-Iv': 'a' }), { 'x-amz-iv': 'a' });
  });

  it("undoes S3's RFC 2047 double encoding (metadata_samples s3-rfc2047-double-encoding)", () => {
    const s = sample('s3-rfc2047-double-encoding') as { put_header: string; head_header: string };
    const put = s.put_header.slice(s.put_header.indexOf(':') + 1).trim();
    const head = s.head_header.slice(s.head_header.indexOf(':') + 1).trim();
    assert.equal(put, 'ÄMÄZÕÑ S3');
    assert.deepEqual(normaliseMetadata({ 'x-amz-meta-nonascii': head }), { nonascii: put });
  });

  it('decodes a value encoded once, several encoded words, and leaves plain text alone', () => {
    assert.equal(decodeS3MetadataValue(`=?UTF-8?B?${Buffer.from('Ä€').toString('base64')}?=`), 'Ä€');
    assert.equal(decodeS3MetadataValue(`=?utf-8?b?${Buffer.from('ab').toString('base64')}?= =?UTF-8?B?${Buffer.from('cd').toString('base64')}?=`), 'abcd');
    assert.equal(decodeS3MetadataValue('{"kms_cmk_id":"x"}'), '{"kms_cmk_id":"x"}');
    assert.equal(decodeS3MetadataValue('=?UTF-8?B?not closed'), '=?UTF-8?B?not closed');
  });

  it('reports an encoded word that is not UTF-8 as bad-metadata', () => {
    assert.throws(
      () => decodeS3MetadataValue(`=?UTF-8?B?${Buffer.from([0xff, 0xfe]).toString('base64')}?=`),
      (e: unknown) => e instanceof FormatError && e.reason === 'bad-metadata',
    );
  });
});

describe('base64 fields', () => {
  const bytes = Buffer.from([0xfb, 0xff, 0xbf, 0x00, 0x01]);

  it('accepts standard and URL-safe alphabets, with or without padding', () => {
    for (const text of [bytes.toString('base64'), bytes.toString('base64url'), bytes.toString('base64').replace(/=+$/, '')]) {
      assert.deepEqual(decodeBase64Field(text, 'f'), bytes);
    }
    assert.equal(encodeBase64(bytes), '+/+/AAE=');
  });

  it('rejects junk, mixed alphabets and impossible lengths without echoing the value', () => {
    for (const text of ['a b', 'ab*', '+/-_', 'abcde', 'ab=c', 'abc==', 'a===']) {
      assert.throws(
        () => decodeBase64Field(text, 'x-amz-key-v2'),
        (e: unknown) => e instanceof FormatError && e.reason === 'bad-metadata' && !e.message.includes(text),
        text,
      );
    }
  });
});

describe('context JSON', () => {
  it('treats absent and empty as {}', () => {
    assert.deepEqual(parseContextJson(undefined, 'm'), {});
    assert.deepEqual(parseContextJson('', 'm'), {});
  });

  it('rejects non-objects and non-string values', () => {
    for (const text of ['[]', 'null', '"x"', '{"a":1}', '{"a":{"b":"c"}}', '{bad']) {
      assert.throws(() => parseContextJson(text, 'x-amz-matdesc'), (e: unknown) => e instanceof FormatError && e.reason === 'bad-metadata', text);
    }
  });

  it('writes ASCII-only JSON that parses back to the same map', () => {
    const context = { 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding', name: 'ÄMÄZÕÑ €', __proto__x: 'p' };
    const text = stringifyContext(context);
    assert.match(text, /^[\x20-\x7e]*$/);
    assert.deepEqual(JSON.parse(text), context);
  });

  it('keeps a "__proto__" key as data', () => {
    const parsed = parseContextJson('{"__proto__":"v","a":"b"}', 'm');
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.deepEqual(Object.entries(parsed), [['__proto__', 'v'], ['a', 'b']]);
  });
});

describe('parseInstructionFile', () => {
  it('reads string values (metadata_samples v2-instruction-file-json-string-numbers)', () => {
    const body = sample('v2-instruction-file-json-string-numbers').instruction_file_body as string;
    const map = parseInstructionFile(body);
    assert.equal(map['x-amz-tag-len'], '128');
    assert.equal(map['x-amz-unencrypted-content-length'], '1024');
    assert.equal(map['x-amz-matdesc'], '{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}');
  });

  it('reads numeric values as decimal strings (metadata_samples v2-instruction-file-json-numeric-values)', () => {
    const body = sample('v2-instruction-file-json-numeric-values').instruction_file_body as string;
    const map = parseInstructionFile(Buffer.from(body));
    assert.equal(map['x-amz-tag-len'], '128');
    assert.equal(map['x-amz-unencrypted-content-length'], '1024');
  });

  it('treats null as absent', () => {
    assert.deepEqual(parseInstructionFile('{"x-amz-iv":"a","x-amz-tag-len":null}'), { 'x-amz-iv': 'a' });
  });

  it('rejects everything that is not a flat JSON object of strings and numbers', () => {
    for (const body of ['', '[]', '"x"', 'null', '{"a":true}', '{"a":[1]}', '{"a":{}}', Buffer.from([0xff]), 'x'.repeat(70_000)]) {
      assert.throws(() => parseInstructionFile(body), (e: unknown) => e instanceof FormatError && e.reason === 'bad-metadata');
    }
  });
});
