import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DataKey } from '../../../src/crypto/data-key.js';
import { buildEnvelope } from '../../../src/crypto/new-envelope.js';
import { deriveV3Commitment } from '../../../src/crypto/v3-kdf.js';
import { FormatError } from '../../../src/errors.js';
import type { ReasonCode } from '../../../src/errors.js';
import {
  encryptionContextForNewEnvelope,
  rewrapEncryptionContexts,
  userEncryptionContext,
} from '../../../src/formats/encryption-context.js';
import type { Envelope } from '../../../src/formats/envelope.js';
import { S3EC_METADATA_KEYS } from '../../../src/formats/keys.js';
import { parseEnvelope } from '../../../src/formats/parse.js';
import { withRewrappedKey } from '../../../src/formats/rewrap.js';
import { serialiseEnvelope } from '../../../src/formats/serialise.js';
import { resolvedV3Objects, sample, v2Vectors } from '../../helpers/vectors.js';

function rejects(reason: ReasonCode, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof FormatError && e.reason === reason);
}

function roundTrip(envelope: Envelope): Envelope {
  const out = serialiseEnvelope(envelope);
  for (const key of Object.keys(out.objectMetadata)) assert.ok(S3EC_METADATA_KEYS.has(key), key);
  return parseEnvelope(out.objectMetadata, out.instructionFile);
}

const v2Vector = v2Vectors.find((v) => v.id === 'go-v2-getobject-kms-context-gcm');
const v3Meta = resolvedV3Objects()[0]?.metadata ?? {};
const sesMeta = (sample('ses-produced-v2-kms-gcm') as { metadata_with_prefix: Record<string, string> }).metadata_with_prefix;

describe('serialiseEnvelope', () => {
  it('writes every V2 vector back to metadata that parses to the same envelope', () => {
    for (const v of v2Vectors.filter((x) => x.metadata !== undefined)) {
      const envelope = parseEnvelope(v.metadata ?? {});
      assert.deepEqual(roundTrip(envelope), envelope, v.id);
      const moved = { ...envelope, location: 'instruction-file' } as const;
      const out = serialiseEnvelope(moved);
      assert.deepEqual(out.objectMetadata, {}, v.id);
      assert.deepEqual(roundTrip(moved), moved, v.id);
    }
  });

  it('writes the Go v2 encrypt vector exactly as its derived metadata says (keys and values)', () => {
    const v = v2Vectors.find((x) => x.id === 'go-v2-putobject-kms-context-gcm');
    const expected = v?.expected_metadata_derived ?? {};
    const envelope = parseEnvelope(expected);
    const written = serialiseEnvelope(envelope).objectMetadata;
    assert.deepEqual(
      Object.fromEntries(Object.entries(written).map(([k, val]) => [k, k === 'x-amz-matdesc' ? JSON.parse(val) : val])),
      Object.fromEntries(Object.entries(expected).map(([k, val]) => [k, k === 'x-amz-matdesc' ? JSON.parse(val) : val])),
    );
  });

  it('writes V3 in object metadata and split across an instruction file', () => {
    const envelope = parseEnvelope(v3Meta);
    assert.deepEqual(serialiseEnvelope(envelope).objectMetadata, v3Meta);
    const split = { ...envelope, location: 'instruction-file' } as const;
    const out = serialiseEnvelope(split);
    assert.deepEqual(Object.keys(out.objectMetadata).sort(), ['x-amz-c', 'x-amz-d', 'x-amz-i']);
    const file = JSON.parse(out.instructionFile ?? '{}') as Record<string, string>;
    assert.deepEqual(Object.keys(file).sort(), ['x-amz-3', 'x-amz-t', 'x-amz-w']);
    assert.deepEqual(roundTrip(split), split);
  });

  it('keeps non-ASCII contexts header-safe and exact after a round trip', () => {
    const envelope = parseEnvelope({ ...v3Meta, 'x-amz-t': JSON.stringify({ 'aws:x-amz-cek-alg': '115', team: 'Zürich €' }) });
    const written = serialiseEnvelope(envelope).objectMetadata['x-amz-t'] ?? '';
    assert.match(written, /^[\x20-\x7e]*$/);
    assert.deepEqual(roundTrip(envelope).encryptionContext, { 'aws:x-amz-cek-alg': '115', team: 'Zürich €' });
  });

  it('refuses to write V1', () => {
    const v1 = parseEnvelope({ 'x-amz-key': 'a2V5', 'x-amz-iv': Buffer.alloc(16).toString('base64') });
    rejects('unsupported-algorithm', () => serialiseEnvelope(v1));
  });
});

describe('KMS encryption context helpers', () => {
  it('keeps a kms+context EC through a rewrap and changes only the key', () => {
    const envelope = parseEnvelope(v2Vector?.metadata ?? {});
    const { source, destination } = rewrapEncryptionContexts(envelope, 'arn:aws:kms:eu-west-1:111122223333:key/new');
    assert.deepEqual(source, { 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' });
    assert.deepEqual(destination, source);
    const rewrapped = withRewrappedKey(envelope, { encryptedDataKey: Buffer.from('new-blob'), encryptionContext: destination });
    assert.deepEqual(rewrapped, { ...envelope, encryptedDataKey: Buffer.from('new-blob') });
    const reread = roundTrip(rewrapped);
    assert.deepEqual(reread, rewrapped);
  });

  it('moves kms_cmk_id with a legacy kms rewrap and keeps the other context keys', () => {
    const envelope = parseEnvelope(sesMeta);
    const { source, destination } = rewrapEncryptionContexts(envelope, 'arn:aws:kms:eu-west-1:111122223333:key/new');
    assert.equal(destination['kms_cmk_id'], 'arn:aws:kms:eu-west-1:111122223333:key/new');
    assert.deepEqual({ ...destination, kms_cmk_id: source['kms_cmk_id'] }, source);
    const rewrapped = withRewrappedKey(envelope, { encryptedDataKey: Buffer.from('blob'), encryptionContext: destination });
    assert.equal(rewrapped.version, 'v2');
    assert.equal(rewrapped.wrapAlgorithm, 'kms');
    assert.deepEqual(roundTrip(rewrapped).encryptionContext, destination);
    assert.deepEqual(Object.keys(userEncryptionContext(envelope)).sort(), ['aws:ses:message-id', 'aws:ses:rule-name', 'aws:ses:source-account']);
  });

  it('keeps a V3 envelope V3 (message id and commitment untouched) through a rewrap', () => {
    const envelope = parseEnvelope(v3Meta);
    const { destination } = rewrapEncryptionContexts(envelope, 'key-2');
    const rewrapped = withRewrappedKey(envelope, { encryptedDataKey: Buffer.from('b'), encryptionContext: destination });
    assert.deepEqual(rewrapped, { ...envelope, encryptedDataKey: Buffer.from('b') });
  });

  it('refuses rewraps that would break readers', () => {
    const gcm = parseEnvelope(v2Vector?.metadata ?? {});
    rejects('bad-metadata', () => withRewrappedKey(gcm, { encryptedDataKey: Buffer.from('b'), encryptionContext: {} }));
    rejects('bad-metadata', () => withRewrappedKey(gcm, { encryptedDataKey: Buffer.alloc(0), encryptionContext: gcm.encryptionContext }));
    const ses = parseEnvelope(sesMeta);
    rejects('bad-metadata', () => withRewrappedKey(ses, { encryptedDataKey: Buffer.from('b'), encryptionContext: { a: 'b' } }));
    rejects('bad-metadata', () => rewrapEncryptionContexts(ses, ''));
    const raw = parseEnvelope({ ...(v2Vector?.metadata ?? {}), 'x-amz-wrap-alg': 'AES/GCM' });
    rejects('unsupported-algorithm', () => rewrapEncryptionContexts(raw, 'k'));
    rejects('unsupported-algorithm', () => withRewrappedKey(raw, { encryptedDataKey: Buffer.from('b'), encryptionContext: {} }));
  });

  it('builds the GenerateDataKey context from the user context and refuses reserved keys', () => {
    assert.deepEqual(encryptionContextForNewEnvelope('v2', { team: 'a' }), { team: 'a', 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' });
    assert.deepEqual(encryptionContextForNewEnvelope('v3', {}), { 'aws:x-amz-cek-alg': '115' });
    rejects('bad-metadata', () => encryptionContextForNewEnvelope('v2', { 'aws:x-amz-cek-alg': 'x' }));
    rejects('bad-metadata', () => encryptionContextForNewEnvelope('v3', { kms_cmk_id: 'x' }));
  });
});

describe('buildEnvelope', () => {
  it('builds a V2 kms+context GCM envelope with a fresh 12-byte IV', () => {
    const key = DataKey.generate();
    const context = encryptionContextForNewEnvelope('v2', { team: 'a' });
    const a = buildEnvelope({ version: 'v2', encryptedDataKey: Buffer.from('blob'), encryptionContext: context, dataKey: key, unencryptedContentLength: 10 });
    const b = buildEnvelope({ version: 'v2', encryptedDataKey: Buffer.from('blob'), encryptionContext: context, dataKey: key });
    assert.ok(a.version === 'v2' && b.version === 'v2');
    assert.equal(a.iv.byteLength, 12);
    assert.notDeepEqual(a.iv, b.iv);
    assert.deepEqual(roundTrip(a), a);
    assert.equal(serialiseEnvelope(a).objectMetadata['x-amz-tag-len'], '128');
    assert.ok(!key.destroyed, 'building an envelope does not consume the key');
  });

  it('builds a V3 envelope whose commitment matches the data key and a fresh 28-byte message id', () => {
    const key = DataKey.generate();
    const envelope = buildEnvelope({
      version: 'v3',
      encryptedDataKey: Buffer.from('blob'),
      encryptionContext: encryptionContextForNewEnvelope('v3', {}),
      dataKey: key,
      location: 'instruction-file',
    });
    assert.ok(envelope.version === 'v3');
    assert.equal(envelope.messageId.byteLength, 28);
    assert.deepEqual(Buffer.from(envelope.keyCommitment), key.use((k) => deriveV3Commitment(k, envelope.messageId)));
    assert.deepEqual(serialiseEnvelope(envelope).objectMetadata['x-amz-c'], '115');
    assert.deepEqual(roundTrip(envelope), envelope);
  });

  it('refuses a context that does not bind the content cipher', () => {
    rejects('bad-metadata', () =>
      buildEnvelope({ version: 'v3', encryptedDataKey: Buffer.from('b'), encryptionContext: encryptionContextForNewEnvelope('v2', {}), dataKey: DataKey.generate() }),
    );
    rejects('bad-metadata', () =>
      buildEnvelope({ version: 'v2', encryptedDataKey: Buffer.alloc(0), encryptionContext: encryptionContextForNewEnvelope('v2', {}), dataKey: DataKey.generate() }),
    );
  });
});
