import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DisableKeyCommand } from '@aws-sdk/client-kms';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, PutObjectLegalHoldCommand } from '@aws-sdk/client-s3';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { decodeS3MetadataValue, encodeS3MetadataValue } from '../../src/formats/index.js';
import { FaultProxy, kmsError, type RequestMatcher } from '../helpers/kms-fault-proxy.js';
import { rekey } from '../helpers/cli.js';
import { freshKmsKey, openStack, uniqueName, type TestKey, type TestStack } from '../helpers/stack.js';
import { decryptObject } from '../helpers/verify.js';
import { rawObject, type RawObject } from '../helpers/campaign.js';
import { sealLegacyCbc } from '../helpers/legacy-cbc.js';
import { putSealed, seal, type Sealed } from '../helpers/sealed.js';

type Mode = 'rewrap' | 'rekey';

interface Keys {
  readonly old: TestKey;
  readonly foreign: TestKey;
  readonly disabled: TestKey;
}

interface BadInput {
  readonly key: string;
  readonly what: string;
  /** `outcome:reason` as the report gives it, per mode; `rotated` for objects that are fine. */
  readonly expect: Readonly<Record<Mode, string>>;
  readonly create: (ctx: Context, key: string) => Promise<void>;
}

interface Context {
  readonly stack: TestStack;
  readonly bucket: string;
  readonly keys: Keys;
}

const EC = { tenant: 'acme' };
const NON_ASCII_EC = { städte: 'Zürich/東京', note: 'naïve café' };
/** Only rekey reads bodies; rewrap moves the wrapped key and never sees the content (docs/design.md §2). */
const BODY_ONLY = (reason: string) => ({ rekey: `failed:${reason}`, rewrap: 'rotated' });
const BOTH = (outcome: string) => ({ rekey: outcome, rewrap: outcome });

async function sealed(ctx: Context, size: number, options: { format?: 'v2' | 'v3'; kmsKeyId?: string; context?: Record<string, string>; instructionFile?: boolean; recordLength?: boolean } = {}): Promise<Sealed> {
  return seal(ctx.stack.kms, randomBytes(size), {
    kmsKeyId: options.kmsKeyId ?? ctx.keys.old.keyId,
    format: options.format ?? 'v2',
    context: options.context ?? EC,
    ...(options.instructionFile ? { instructionFile: true } : {}),
    ...(options.recordLength ? { recordLength: true } : {}),
  });
}

/** Stores a sealed object after `damage` changed its body or metadata. */
async function putDamaged(ctx: Context, key: string, s: Sealed, damage: { body?: (b: Buffer) => Buffer; metadata?: (m: Record<string, string>) => Record<string, string>; instructionFile?: string }): Promise<void> {
  await putSealed(ctx.stack.s3, ctx.bucket, key, {
    ciphertext: damage.body ? damage.body(Buffer.from(s.ciphertext)) : s.ciphertext,
    metadata: damage.metadata ? damage.metadata({ ...s.metadata }) : s.metadata,
    instructionFile: damage.instructionFile ?? s.instructionFile,
  });
}

function flip(b: Buffer, at: number): Buffer {
  b[at < 0 ? b.length + at : at]! ^= 0x01;
  return b;
}

const b64 = (n: number) => randomBytes(n).toString('base64');

/** A context a writer sent as raw UTF-8 JSON, in the form S3 stores and returns it (docs/formats.md §1.9). */
function asS3Returns(context: Record<string, string>): string {
  const text = JSON.stringify(context);
  assert.match(text, /[^\x00-\x7f]/, 'the JSON carries raw non-ASCII text');
  return encodeS3MetadataValue(text);
}

const CASES: readonly BadInput[] = [
  { key: 'good/v2', what: 'control: a sound V2 object', expect: BOTH('rotated'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 5000)) },
  { key: 'good/v3-instruction-file', what: 'control: a sound V3 object, key in an instruction file', expect: BOTH('rotated'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 5000, { format: 'v3', instructionFile: true })) },
  // content
  { key: 'tampered/ciphertext', what: 'one ciphertext bit flipped (V2)', expect: BODY_ONLY('tag-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000), { body: (b) => flip(b, 100) }) },
  { key: 'tampered/tag', what: 'one bit of the GCM tag flipped (V2)', expect: BODY_ONLY('tag-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000), { body: (b) => flip(b, -3) }) },
  { key: 'tampered/iv', what: 'x-amz-iv replaced by another 12-byte IV (V2)', expect: BODY_ONLY('tag-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000), { metadata: (m) => ({ ...m, 'x-amz-iv': b64(12) }) }) },
  { key: 'tampered/v3-ciphertext', what: 'one ciphertext bit flipped (V3)', expect: BODY_ONLY('tag-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000, { format: 'v3' }), { body: (b) => flip(b, 7) }) },
  { key: 'tampered/v3-message-id', what: 'x-amz-i (message id) replaced (V3)', expect: BODY_ONLY('commitment-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000, { format: 'v3' }), { metadata: (m) => ({ ...m, 'x-amz-i': b64(28) }) }) },
  { key: 'tampered/v3-commitment', what: 'x-amz-d (key commitment) replaced (V3)', expect: BODY_ONLY('commitment-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000, { format: 'v3' }), { metadata: (m) => ({ ...m, 'x-amz-d': b64(28) }) }) },
  { key: 'truncated/recorded-length', what: '100 bytes cut off, plaintext length recorded', expect: BODY_ONLY('truncated'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000, { recordLength: true }), { body: (b) => b.subarray(0, b.length - 100) }) },
  { key: 'truncated/no-length', what: '100 bytes cut off, no recorded length (GCM cannot tell it from tampering)', expect: BODY_ONLY('tag-mismatch'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000), { body: (b) => b.subarray(0, b.length - 100) }) },
  { key: 'truncated/below-tag', what: 'a 10-byte body: shorter than a GCM tag', expect: BOTH('failed:truncated'), create: async (c, k) => putDamaged(c, k, await sealed(c, 5000), { body: (b) => b.subarray(0, 10) }) },
  // keys
  { key: 'key/wrong-context', what: 'encryption context in x-amz-matdesc altered', expect: BOTH('failed:wrong-key'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-matdesc': JSON.stringify({ tenant: 'evil', 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' }) }) }) },
  { key: 'key/corrupt-wrapped-key', what: 'one bit of the wrapped data key flipped', expect: BOTH('failed:wrong-key'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-key-v2': flip(Buffer.from(m['x-amz-key-v2']!, 'base64'), -1).toString('base64') }) }) },
  {
    key: 'key/swapped-data-key',
    what: 'a valid wrapped key of another object (same KMS key and context)',
    expect: BODY_ONLY('tag-mismatch'),
    create: async (c, k) => {
      const other = await sealed(c, 10);
      await putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-key-v2': other.metadata['x-amz-key-v2']! }) });
    },
  },
  { key: 'key/disabled', what: 'data key under a disabled KMS key (DisabledException)', expect: BOTH('failed:kms-disabled'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 500, { kmsKeyId: c.keys.disabled.keyId })) },
  { key: 'key/foreign', what: 'data key under a KMS key the campaign does not rotate', expect: BOTH('skipped:source-key-mismatch'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 500, { kmsKeyId: c.keys.foreign.keyId })) },
  // metadata and instruction files
  {
    key: 'meta/missing-instruction-file',
    what: 'V3 object keys (c, d, i) without their instruction file',
    expect: BOTH('failed:missing-instruction-file'),
    create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, { ...(await sealed(c, 500, { format: 'v3', instructionFile: true })), instructionFile: undefined }),
  },
  { key: 'meta/iv-length', what: 'x-amz-iv of 8 bytes', expect: BOTH('failed:bad-metadata'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-iv': b64(8) }) }) },
  { key: 'meta/key-not-base64', what: 'x-amz-key-v2 is not base64', expect: BOTH('failed:bad-metadata'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-key-v2': '!!not*base64!!' }) }) },
  { key: 'meta/matdesc-not-json', what: 'x-amz-matdesc is not JSON', expect: BOTH('failed:bad-metadata'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-matdesc': '{tenant: acme' }) }) },
  { key: 'meta/partial', what: 'only x-amz-iv and x-amz-cek-alg of an envelope', expect: BOTH('failed:unknown-format'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ 'x-amz-iv': m['x-amz-iv']!, 'x-amz-cek-alg': m['x-amz-cek-alg']! }) }) },
  { key: 'meta/mixed-format', what: 'V2 envelope plus a V3 key in one object', expect: BOTH('failed:mixed-format'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-3': m['x-amz-key-v2']! }) }) },
  { key: 'meta/unknown-cipher', what: 'x-amz-cek-alg AES/CTR/NoPadding', expect: BOTH('failed:unsupported-algorithm'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-cek-alg': 'AES/CTR/NoPadding' }) }) },
  { key: 'meta/raw-wrap', what: 'data key wrapped with raw AES, not KMS', expect: BOTH('failed:unsupported-algorithm'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500), { metadata: (m) => ({ ...m, 'x-amz-wrap-alg': 'AES/GCM', 'x-amz-matdesc': '{}' }) }) },
  { key: 'meta/instruction-file-not-json', what: 'V2 instruction file that is not JSON', expect: BOTH('failed:bad-metadata'), create: async (c, k) => putDamaged(c, k, await sealed(c, 500, { instructionFile: true }), { instructionFile: '{"x-amz-key-v2": ' }) },
  {
    key: 'meta/instruction-file-mixed',
    what: 'V3 instruction file that also carries a V2 key',
    expect: BOTH('failed:mixed-format'),
    create: async (c, k) => {
      const s = await sealed(c, 500, { format: 'v3', instructionFile: true });
      const file = JSON.parse(s.instructionFile!) as Record<string, string>;
      await putDamaged(c, k, s, { instructionFile: JSON.stringify({ ...file, 'x-amz-key-v2': file['x-amz-3']! }) });
    },
  },
  {
    key: 'meta/instruction-file-redirects',
    what: 'V3 instruction file that carries the object-only x-amz-c',
    expect: BOTH('failed:bad-metadata'),
    create: async (c, k) => {
      const s = await sealed(c, 500, { format: 'v3', instructionFile: true });
      await putDamaged(c, k, s, { instructionFile: JSON.stringify({ ...(JSON.parse(s.instructionFile!) as object), 'x-amz-c': '115' }) });
    },
  },
  {
    key: 'meta/metadata-and-file-disagree',
    what: 'a V2 envelope in metadata and another in an instruction file: metadata wins (docs/formats.md §1.2)',
    expect: BOTH('rotated'),
    create: async (c, k) => {
      const other = await sealed(c, 10, { instructionFile: true });
      await putDamaged(c, k, await sealed(c, 500), { instructionFile: other.instructionFile! });
    },
  },
  // issue 12: unauthenticated content and S3's 2 KB user-metadata limit
  {
    key: 'legacy/cbc',
    what: 'legacy AES/CBC content (kms wrap), no --allow-unauthenticated-source',
    expect: { rekey: 'skipped:unauthenticated-source', rewrap: 'rotated' },
    create: async (c, k) => {
      const cbc = await sealLegacyCbc(c.stack.kms, c.keys.old.keyId, randomBytes(3000));
      await c.stack.s3.send(new PutObjectCommand({ Bucket: c.bucket, Key: k, Body: cbc.ciphertext, Metadata: cbc.metadata }));
    },
  },
  {
    key: 'meta/large-user-metadata',
    what: 'V2 envelope in an instruction file beside 1.9 KB of user metadata: no room for it in metadata',
    expect: BOTH('rotated'),
    create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 2000, { instructionFile: true }), { Metadata: { notes: 'n'.repeat(1900) } }),
  },
  {
    key: 'meta/metadata-full',
    what: 'V3 instruction-file object whose user metadata fills 2 KB: no room even for c/d/i (rewrap leaves the object alone)',
    expect: { rekey: 'failed:metadata-too-large', rewrap: 'rotated' },
    create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 2000, { format: 'v3', instructionFile: true }), { Metadata: { notes: 'n'.repeat(2040) } }),
  },
  // not S3EC, empty, huge
  { key: 'plain/text', what: 'an object no S3EC wrote', expect: BOTH('skipped:not-encrypted'), create: async (c, k) => void (await c.stack.s3.send(new PutObjectCommand({ Bucket: c.bucket, Key: k, Body: 'plain text' }))) },
  { key: 'plain/empty', what: 'a 0-byte object without S3EC metadata', expect: BOTH('skipped:not-encrypted'), create: async (c, k) => void (await c.stack.s3.send(new PutObjectCommand({ Bucket: c.bucket, Key: k, Body: '' }))) },
  { key: 'empty/v2', what: 'an encrypted empty object (16-byte body: the tag)', expect: BOTH('rotated'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 0)) },
  { key: 'empty/v3-recorded', what: 'an encrypted empty V3 object with its length recorded', expect: BOTH('rotated'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 0, { format: 'v3', recordLength: true })) },
  { key: 'empty/claims-s3ec', what: 'a 0-byte object with V2 metadata', expect: BOTH('failed:truncated'), create: async (c, k) => putDamaged(c, k, await sealed(c, 100), { body: () => Buffer.alloc(0) }) },
  {
    key: 'huge/recorded-length',
    what: 'x-amz-unencrypted-content-length of 2^36 bytes, above the GCM limit of 2^36-32',
    expect: BOTH('failed:too-large'),
    create: async (c, k) => putDamaged(c, k, await sealed(c, 100), { metadata: (m) => ({ ...m, 'x-amz-unencrypted-content-length': String(2 ** 36) }) }),
  },
  // encryption context and lock
  { key: 'ec/non-ascii-escaped-v2', what: 'non-ASCII encryption context, JSON with \\u escapes (V2)', expect: BOTH('rotated'), create: async (c, k) => putSealed(c.stack.s3, c.bucket, k, await sealed(c, 3000, { context: NON_ASCII_EC })) },
  {
    key: 'ec/non-ascii-rfc2047-v2',
    what: 'non-ASCII encryption context in UTF-8 JSON, as S3 returns it: RFC 2047, double-encoded (V2)',
    expect: BOTH('rotated'),
    create: async (c, k) => putDamaged(c, k, await sealed(c, 3000, { context: NON_ASCII_EC }), { metadata: (m) => ({ ...m, 'x-amz-matdesc': asS3Returns({ ...NON_ASCII_EC, 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' }) }) }),
  },
  {
    key: 'ec/non-ascii-rfc2047-v3',
    what: 'non-ASCII encryption context in UTF-8 JSON, RFC 2047, double-encoded (V3)',
    expect: BOTH('rotated'),
    create: async (c, k) => putDamaged(c, k, await sealed(c, 3000, { format: 'v3', context: NON_ASCII_EC }), { metadata: (m) => ({ ...m, 'x-amz-t': asS3Returns({ ...NON_ASCII_EC, 'aws:x-amz-cek-alg': '115' }) }) }),
  },
  {
    key: 'lock/legal-hold',
    what: 'an object under a legal hold',
    expect: BOTH('skipped:object-locked'),
    create: async (c, k) => {
      await putSealed(c.stack.s3, c.bucket, k, await sealed(c, 500));
      await c.stack.s3.send(new PutObjectLegalHoldCommand({ Bucket: c.bucket, Key: k, LegalHold: { Status: 'ON' } }));
    },
  },
];

/**
 * moto lets a disabled key keep working (docs/design.md §8.1), so the fault proxy in front of KMS
 * answers DisabledException, as AWS does, for Decrypt and ReEncrypt of a blob under that key. moto's
 * blob starts with the key id in clear: that is how the proxy tells.
 */
function underKey(keyId: string): RequestMatcher {
  return (request) => {
    const target = request.headers['x-amz-target'];
    if (target !== 'TrentService.Decrypt' && target !== 'TrentService.ReEncrypt') return false;
    const blob = (JSON.parse(request.body?.toString() || '{}') as { CiphertextBlob?: string }).CiphertextBlob;
    return blob !== undefined && Buffer.from(blob, 'base64').subarray(0, keyId.length).toString() === keyId;
  };
}

interface ReportRow {
  readonly Key: string;
  readonly Outcome: string;
  readonly Reason: string;
  readonly ResultMessage: string;
}

describe(`bad input: ${CASES.length} kinds of objects in one bucket, each with a stable reason, none stopping the campaign`, () => {
  let stack: TestStack;
  let keys: Keys;
  let newKey: TestKey;
  let proxy: FaultProxy;

  before(async () => {
    stack = openStack();
    keys = { old: await freshKmsKey(stack.kms, 'old'), foreign: await freshKmsKey(stack.kms, 'foreign'), disabled: await freshKmsKey(stack.kms, 'disabled') };
    newKey = await freshKmsKey(stack.kms, 'new');
    proxy = await FaultProxy.start({ target: stack.config.kmsEndpoint!, inspectBodies: true });
    proxy.inject({ fault: kmsError('DisabledException', { message: `${keys.disabled.arn} is disabled.` }), match: underKey(keys.disabled.keyId) });
  });
  after(async () => {
    await proxy.close();
    await stack.close();
  });

  for (const mode of ['rewrap', 'rekey'] as const) {
    test(`${mode}: every bad object gets its reason code and stays as it was; the sound ones rotate`, async () => {
      const bucket = uniqueName('bad');
      // Object lock needs a lock-enabled (hence versioned) bucket; the other cases do not mind one.
      await stack.s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
      const ctx: Context = { stack, bucket, keys };
      for (const c of CASES) await c.create(ctx, c.key);
      // Disabled only now, so the objects could be written under it: AWS refuses GenerateDataKey too.
      await stack.kms.send(new DisableKeyCommand({ KeyId: keys.disabled.keyId }));
      const before = new Map<string, RawObject>();
      for (const c of CASES) before.set(c.key, await rawObject(stack.s3, bucket, c.key));
      const files = new Map<string, RawObject | undefined>();
      for (const c of CASES) files.set(c.key, await rawObject(stack.s3, bucket, `${c.key}.instruction`).catch(() => undefined));

      const kmsVia = { AWS_ENDPOINT_URL_KMS: proxy.url };
      const run = await rekey(stack.config, [
        'run', '--bucket', bucket, '--mode', mode, '--target-key', newKey.keyId,
        '--source-key', keys.old.keyId, '--source-key', keys.disabled.keyId, '--batch-size', '7', '--json', '--no-watch',
      ], kmsVia);
      // --json prints the plan, then the final status.
      const final = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as CampaignStatus;
      // Bad objects stay under the old key: the closing verification counts them, and run exits 3 as audit would.
      assert.equal(final.state, 'done-with-remainder', run.stderr);
      assert.ok((final.verification?.remaining ?? 0) + (final.verification?.unreadable ?? 0) > 0, JSON.stringify(final.verification));
      assert.equal(run.code, 3, 'entries left under the old key make the run exit 3, after every object got its outcome');
      assert.equal(final.done, final.planned);

      const report = await rekey(stack.config, ['report', final.id, '--format', 'jsonl']);
      assert.equal(report.code, 0, report.stderr);
      const rows = report.stdout.trim().split('\n').map((l) => JSON.parse(l) as ReportRow);
      const got = Object.fromEntries(rows.map((r) => [r.Key, r.Reason ? `${r.Outcome}:${r.Reason}` : r.Outcome]));
      const wrong = CASES.filter((c) => got[c.key] !== c.expect[mode]).map((c) => `${c.key} (${c.what}): ${got[c.key]}, expected ${c.expect[mode]}`);
      assert.deepEqual(wrong, []);
      // Instruction files beside the cases are entries too: they move with their objects, never rotated on their own.
      const extra = rows.filter((r) => !CASES.some((c) => c.key === r.Key));
      assert.ok(extra.every((r) => r.Key.endsWith('.instruction') && r.Outcome !== 'rotated'), JSON.stringify(extra.map((r) => [r.Key, r.Outcome, r.Reason])));
      assert.equal(rows.length - extra.length, CASES.length, 'one report row per object');
      assert.equal(rows.length, final.done);
      for (const r of rows) assert.doesNotMatch(r.ResultMessage, /[A-Za-z0-9+/]{40,}/, `${r.Key}: no key material in the message`);

      for (const c of CASES) {
        const after = await rawObject(stack.s3, bucket, c.key);
        if (c.expect[mode] !== 'rotated') {
          assert.deepEqual(after, before.get(c.key), `${c.key} (${c.what}: ${c.expect[mode]}) is byte-identical, metadata included`);
          assert.deepEqual(await rawObject(stack.s3, bucket, `${c.key}.instruction`).catch(() => undefined), files.get(c.key), `${c.key}: its instruction file is untouched`);
        } else if (mode === 'rewrap') {
          assert.equal(after.sha256, before.get(c.key)!.sha256, `${c.key}: rewrap leaves the ciphertext as it was`);
        }
      }
      for (const key of ['good/v2', 'good/v3-instruction-file', 'empty/v2', 'empty/v3-recorded', 'meta/metadata-and-file-disagree', 'meta/large-user-metadata']) {
        assert.equal((await decryptObject(stack, bucket, key)).keyId, newKey.arn, `${key} decrypts under the new key`);
      }
      for (const [key, field] of [['ec/non-ascii-escaped-v2', 'x-amz-matdesc'], ['ec/non-ascii-rfc2047-v2', 'x-amz-matdesc'], ['ec/non-ascii-rfc2047-v3', 'x-amz-t']] as const) {
        assert.equal((await decryptObject(stack, bucket, key)).keyId, newKey.arn, `${key} decrypts under the new key`);
        await assertContextKept(stack, bucket, key, field);
      }
      process.stdout.write(`# bad-input-figures ${JSON.stringify({ mode, cases: CASES.length, byReason: final.byReason })}\n`);
    });
  }
});

/** The stored context, as any reader decodes it from S3, still names the writer's text (KMS compares it exactly). */
async function assertContextKept(stack: TestStack, bucket: string, key: string, field: string): Promise<void> {
  const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const raw = head.Metadata![field]!;
  assert.match(raw, /^[\x20-\x7e]*$/, `${key}: ${field} travels as ASCII, as S3 metadata must`);
  const context = JSON.parse(decodeS3MetadataValue(raw)) as Record<string, string>;
  for (const [k, v] of Object.entries(NON_ASCII_EC)) assert.equal(context[k], v, `${key}: ${k} survives`);
}
