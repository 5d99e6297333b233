import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormatError } from '../../../src/errors.js';
import type { ReasonCode } from '../../../src/errors.js';
import { isInstructionFileObject } from '../../../src/formats/detect.js';
import { kmsEncryptionContext } from '../../../src/formats/encryption-context.js';
import type { Envelope } from '../../../src/formats/envelope.js';
import { inspectMetadata, parseEnvelope } from '../../../src/formats/parse.js';
import { resolvedV3Objects, sample, v2Vectors } from '../../helpers/vectors.js';

function prefixed(meta: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(meta).map(([k, v]) => [`X-Amz-Meta-${k.toUpperCase()}`, v]));
}

function rejects(reason: ReasonCode, fn: () => unknown, label?: string): void {
  assert.throws(fn, (e: unknown) => e instanceof FormatError && e.reason === reason, label);
}

const v2Gcm = v2Vectors.find((v) => v.id === 'go-v2-getobject-kms-context-gcm')?.metadata ?? {};
const v3Meta = resolvedV3Objects()[0]?.metadata ?? {};

describe('V1/V2 vectors (s3ec_v2_content_kats)', () => {
  for (const v of v2Vectors.filter((x) => x.metadata !== undefined)) {
    it(`parses ${v.id}`, () => {
      const meta = v.metadata ?? {};
      const envelope = parseEnvelope(prefixed(meta));
      assert.ok(envelope.version === 'v2');
      assert.equal(envelope.location, 'object-metadata');
      assert.equal(envelope.contentCipher, v.content_alg);
      assert.equal(envelope.wrapAlgorithm, meta['x-amz-wrap-alg']);
      assert.deepEqual(Buffer.from(envelope.encryptedDataKey), Buffer.from(meta['x-amz-key-v2'] ?? '', 'base64'));
      if (v.iv_hex !== undefined) assert.equal(Buffer.from(envelope.iv).toString('hex'), v.iv_hex);
      assert.deepEqual(kmsEncryptionContext(envelope), v.kms_encryption_context ?? JSON.parse(meta['x-amz-matdesc'] ?? '{}'));
      assert.deepEqual(inspectMetadata(meta), { kind: 'envelope', envelope });
    });
  }
});

describe('V3 vectors (s3ec_v3_commit_kats)', () => {
  const [good, wrongCommitment, invalidCommitment] = resolvedV3Objects();

  it(`parses ${good?.id}`, () => {
    const envelope = parseEnvelope(good?.metadata ?? {});
    assert.equal(envelope.version, 'v3');
    assert.ok(envelope.version === 'v3');
    assert.equal(envelope.contentCipher, '115');
    assert.equal(envelope.wrapAlgorithm, 'kms+context');
    assert.equal(Buffer.from(envelope.messageId).toString('hex'), 'b04f732dbe2db0404992f1212cc645c4c8fda192416d0e993a03aa1c');
    assert.equal(Buffer.from(envelope.keyCommitment).toString('hex'), 'e89392c78ed191dc9f72226435abae0b846990c716658e1afa2d51cd');
    assert.deepEqual(kmsEncryptionContext(envelope), good?.kms_encryption_context);
  });

  it(`parses ${wrongCommitment?.id} (the mismatch is found by the cipher, not the parser)`, () => {
    assert.equal(parseEnvelope(wrongCommitment?.metadata ?? {}).version, 'v3');
  });

  it(`rejects ${invalidCommitment?.id} as bad-metadata`, () => {
    rejects('bad-metadata', () => parseEnvelope(invalidCommitment?.metadata ?? {}));
    rejects('bad-metadata', () => inspectMetadata(invalidCommitment?.metadata ?? {}));
  });
});

describe('metadata_samples', () => {
  it('parses the SES-written V2 kms object with its whole matdesc as the KMS context', () => {
    const s = sample('ses-produced-v2-kms-gcm') as { metadata_with_prefix: Record<string, string> };
    const envelope = parseEnvelope(s.metadata_with_prefix);
    assert.equal(envelope.wrapAlgorithm, 'kms');
    assert.equal(envelope.contentCipher, 'AES/GCM/NoPadding');
    assert.equal(envelope.unencryptedContentLength, 3946);
    assert.equal(envelope.encryptedDataKey.byteLength, 184);
    const context = kmsEncryptionContext(envelope);
    assert.equal(context['kms_cmk_id'], 'arn:aws:kms:{AWS_ACCOUNT_ID}:{AWS_ACCOUNT_ID}:alias/aws/ses');
    assert.equal(context['aws:ses:rule-name'], 'encrypt-to-s3');
    assert.equal(Object.keys(context).length, 4);
  });

  for (const id of ['v2-instruction-file-json-string-numbers', 'v2-instruction-file-json-numeric-values']) {
    it(`takes a V2 envelope wholly from an instruction file (${id})`, () => {
      const body = (sample(id).instruction_file_body as string)
        .replace('"x-amz-iv":"iv"', `"x-amz-iv":"${Buffer.alloc(12, 7).toString('base64')}"`)
        .replace('"x-amz-key-v2":"key"', '"x-amz-key-v2":"a2V5"');
      assert.deepEqual(inspectMetadata({ 'content-type': 'text/plain' }), { kind: 'not-encrypted' });
      const envelope = parseEnvelope({ 'content-type': 'text/plain' }, body);
      assert.equal(envelope.location, 'instruction-file');
      assert.equal(envelope.version, 'v2');
      assert.equal(envelope.unencryptedContentLength, 1024);
      assert.deepEqual(Buffer.from(envelope.encryptedDataKey), Buffer.from('key'));
    });
  }

  it('splits V3 between object metadata (c/d/i) and the instruction file (v3-instruction-split)', () => {
    const s = sample('v3-instruction-split') as { object_metadata_keys: string[]; instruction_object_user_metadata: Record<string, string> };
    const objectMeta = Object.fromEntries(s.object_metadata_keys.map((k) => [k, v3Meta[k] ?? '']));
    const file = JSON.stringify(Object.fromEntries(Object.entries(v3Meta).filter(([k]) => !s.object_metadata_keys.includes(k))));
    assert.deepEqual(inspectMetadata(objectMeta), { kind: 'needs-instruction-file', version: 'v3' });
    const split = parseEnvelope(prefixed(objectMeta), file);
    const whole = parseEnvelope(v3Meta);
    assert.deepEqual(split, { ...whole, location: 'instruction-file' });
    assert.ok(isInstructionFileObject({ 'x-amz-crypto-instr-file': '' }));
    assert.ok(!isInstructionFileObject(objectMeta));
  });

  it('rejects an instruction file that carries x-amz-c, x-amz-d or x-amz-i', () => {
    const objectMeta = { 'x-amz-c': v3Meta['x-amz-c'] ?? '', 'x-amz-d': v3Meta['x-amz-d'] ?? '', 'x-amz-i': v3Meta['x-amz-i'] ?? '' };
    for (const key of ['x-amz-c', 'x-amz-d', 'x-amz-i']) {
      const file = JSON.stringify({ 'x-amz-3': v3Meta['x-amz-3'], 'x-amz-w': '12', 'x-amz-t': v3Meta['x-amz-t'], [key]: v3Meta[key] });
      rejects('bad-metadata', () => parseEnvelope(objectMeta, file), key);
    }
  });

  it('reports a V3 split without its instruction file as missing-instruction-file', () => {
    rejects('missing-instruction-file', () => parseEnvelope({ 'x-amz-c': '115', 'x-amz-d': 'a', 'x-amz-i': 'b' }));
  });
});

describe('detection', () => {
  it('reports metadata without S3EC keys as not-encrypted', () => {
    assert.deepEqual(inspectMetadata({}), { kind: 'not-encrypted' });
    assert.deepEqual(inspectMetadata({ 'x-amz-meta-x-amz-unencrypted-content-length': '5', owner: 'me' }), { kind: 'not-encrypted' });
    rejects('not-encrypted', () => parseEnvelope({ owner: 'me' }));
  });

  it('reports keys exclusive to two formats as mixed-format', () => {
    rejects('mixed-format', () => parseEnvelope({ ...v2Gcm, 'x-amz-key': 'a2V5' }));
    rejects('mixed-format', () => parseEnvelope({ ...v2Gcm, 'x-amz-3': 'a2V5' }));
    rejects('mixed-format', () => inspectMetadata({ ...v3Meta, 'x-amz-key-v2': 'a2V5' }));
    const objectMeta = { 'x-amz-c': '115', 'x-amz-d': v3Meta['x-amz-d'] ?? '', 'x-amz-i': v3Meta['x-amz-i'] ?? '' };
    const file = JSON.stringify({ 'x-amz-3': v3Meta['x-amz-3'], 'x-amz-w': '12', 'x-amz-key-v2': 'a2V5' });
    rejects('mixed-format', () => parseEnvelope(objectMeta, file));
  });

  it('reports incomplete S3EC metadata as unknown-format', () => {
    for (const meta of [{ 'x-amz-key-v2': 'a2V5' }, { 'x-amz-matdesc': '{}' }, { 'x-amz-3': 'a2V5', 'x-amz-c': '115' }]) {
      rejects('unknown-format', () => inspectMetadata(meta), JSON.stringify(meta));
    }
    rejects('unknown-format', () => parseEnvelope({}, '{"EncryptedEnvelopeKey":"a2V5","IV":"aXY="}'));
  });

  it('lets object metadata win over an instruction file', () => {
    assert.equal(parseEnvelope(v2Gcm, '{"x-amz-iv":"junk"}').location, 'object-metadata');
  });
});

describe('field validation', () => {
  const legacy = v2Gcm;
  const cases: Array<[string, Record<string, string>, ReasonCode]> = [
    ['unknown content cipher', { ...legacy, 'x-amz-cek-alg': 'AES/CTR/NoPadding' }, 'unsupported-algorithm'],
    ['unknown wrap', { ...legacy, 'x-amz-wrap-alg': 'rot13' }, 'unsupported-algorithm'],
    ['V2 without wrap', Object.fromEntries(Object.entries(legacy).filter(([k]) => k !== 'x-amz-wrap-alg')), 'bad-metadata'],
    ['GCM tag length 96', { ...legacy, 'x-amz-tag-len': '96' }, 'bad-metadata'],
    ['CBC with a tag length', { ...legacy, 'x-amz-cek-alg': 'AES/CBC/PKCS5Padding', 'x-amz-iv': Buffer.alloc(16, 1).toString('base64'), 'x-amz-tag-len': '128' }, 'bad-metadata'],
    ['GCM with a 16-byte IV', { ...legacy, 'x-amz-iv': Buffer.alloc(16, 1).toString('base64') }, 'bad-metadata'],
    ['IV not base64', { ...legacy, 'x-amz-iv': 'no*base64' }, 'bad-metadata'],
    ['empty EDK', { ...legacy, 'x-amz-key-v2': '' }, 'bad-metadata'],
    ['matdesc not JSON', { ...legacy, 'x-amz-matdesc': '{' }, 'bad-metadata'],
    ['kms+context EC for another cipher', { ...legacy, 'x-amz-matdesc': '{"aws:x-amz-cek-alg":"AES/CBC/PKCS5Padding"}' }, 'bad-metadata'],
    ['kms+context EC without cek-alg', { ...legacy, 'x-amz-matdesc': '{}' }, 'bad-metadata'],
    ['negative plaintext length', { ...legacy, 'x-amz-unencrypted-content-length': '-1' }, 'bad-metadata'],
    ['fractional plaintext length', { ...legacy, 'x-amz-unencrypted-content-length': '1.5' }, 'bad-metadata'],
    ['V3 unknown cipher', { ...v3Meta, 'x-amz-c': '114' }, 'unsupported-algorithm'],
    ['V3 unknown wrap', { ...v3Meta, 'x-amz-w': '99' }, 'unsupported-algorithm'],
    ['V3 without wrap', Object.fromEntries(Object.entries(v3Meta).filter(([k]) => k !== 'x-amz-w')), 'bad-metadata'],
    ['V3 short message id', { ...v3Meta, 'x-amz-i': Buffer.alloc(27).toString('base64') }, 'bad-metadata'],
    ['V3 long commitment', { ...v3Meta, 'x-amz-d': Buffer.alloc(29).toString('base64') }, 'bad-metadata'],
    ['V3 context for GCM', { ...v3Meta, 'x-amz-t': '{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}' }, 'bad-metadata'],
  ];
  for (const [label, meta, reason] of cases) {
    it(`${label} → ${reason}`, () => rejects(reason, () => parseEnvelope(meta)));
  }

  it('never puts the wrapped key in a message', () => {
    const edk = legacy['x-amz-key-v2'] ?? '';
    for (const [, meta] of cases) {
      try {
        parseEnvelope(meta);
      } catch (e) {
        assert.ok(e instanceof Error && !e.message.includes(edk) && !e.message.includes(v3Meta['x-amz-3'] ?? ''));
      }
    }
  });

  it('accepts a CBC envelope without tag length and a missing matdesc as {}', () => {
    const cbc = { 'x-amz-key-v2': 'a2V5', 'x-amz-iv': Buffer.alloc(16, 1).toString('base64'), 'x-amz-cek-alg': 'AES/CBC/PKCS5Padding', 'x-amz-wrap-alg': 'kms' };
    const envelope = parseEnvelope(cbc);
    assert.equal(envelope.contentCipher, 'AES/CBC/PKCS5Padding');
    assert.deepEqual(envelope.encryptionContext, {});
  });
});

describe('V1 and raw wraps', () => {
  const iv = Buffer.alloc(16, 3).toString('base64');

  it('takes a V1 object without cek-alg as CBC and guesses the raw wrap from the EDK length', () => {
    const aes = parseEnvelope({ 'x-amz-key': Buffer.alloc(48, 1).toString('base64'), 'x-amz-iv': iv, 'x-amz-matdesc': '{"owner":"me"}' });
    assert.deepEqual([aes.version, aes.contentCipher, aes.wrapAlgorithm], ['v1', 'AES/CBC/PKCS5Padding', 'AES']);
    assert.deepEqual(aes.materialDescription, { owner: 'me' });
    assert.deepEqual(aes.encryptionContext, {});
    const rsa = parseEnvelope({ 'x-amz-key': Buffer.alloc(256, 1).toString('base64'), 'x-amz-iv': iv });
    assert.equal(rsa.wrapAlgorithm, 'RSA');
  });

  it('recognises raw V2 wraps but refuses their KMS context as unsupported-algorithm', () => {
    for (const wrap of ['AES/GCM', 'AESWrap', 'RSA-OAEP-SHA1', 'RSA/ECB/OAEPWithSHA-256AndMGF1Padding']) {
      const envelope: Envelope = parseEnvelope({ ...v2Gcm, 'x-amz-wrap-alg': wrap, 'x-amz-matdesc': '{"k":"v"}' });
      assert.equal(envelope.wrapAlgorithm, wrap);
      assert.deepEqual(envelope.materialDescription, { k: 'v' });
      rejects('unsupported-algorithm', () => kmsEncryptionContext(envelope), wrap);
    }
    const v3Raw = parseEnvelope({ ...v3Meta, 'x-amz-w': '02', 'x-amz-m': '{"k":"v"}', 'x-amz-t': '' });
    assert.equal(v3Raw.wrapAlgorithm, 'AES/GCM');
    assert.deepEqual(v3Raw.materialDescription, { k: 'v' });
  });
});
