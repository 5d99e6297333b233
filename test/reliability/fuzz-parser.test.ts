import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { REASON_CODES, RekeyError } from '../../src/errors.js';
import {
  decodeS3MetadataValue,
  encodeS3MetadataValue,
  inspectMetadata,
  kmsEncryptionContext,
  MetaKey,
  parseEnvelope,
  parseInstructionFile,
  rewrapEncryptionContexts,
  serialiseEnvelope,
  userEncryptionContext,
  type Envelope,
} from '../../src/formats/index.js';
import { checkBodyLength } from '../../src/rotate/body-length.js';
import { resolvedV3Objects, v2Vectors } from '../helpers/vectors.js';

/**
 * The metadata parser faces whatever sits in a bucket. Every input either parses or fails with a
 * typed RekeyError (FormatError) carrying a known reason code; never a TypeError, a RangeError or a
 * hang. REKEY_LONG_TESTS=1 runs 25,000 cases per property (125,000 in all); CI runs 1,000 each.
 */
const RUNS = process.env.REKEY_LONG_TESTS === '1' ? 25_000 : 1_000;
const KNOWN = new Set<string>(REASON_CODES);
/** Where the inputs went: `ok` or the reason code, so the figures show both sides were reached. */
const tally = new Map<string, number>();

function parsesOrTypedError(fn: () => unknown): void {
  let result = 'ok';
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof RekeyError, `not a RekeyError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.ok(KNOWN.has(e.reason), `unknown reason ${e.reason}`);
    assert.ok(e.message.length < 500, 'one-line messages');
    result = e.reason;
  }
  tally.set(result, (tally.get(result) ?? 0) + 1);
}

/** Everything rekey does with an envelope once parsed, before any I/O. */
function useEnvelope(envelope: Envelope, size: number): void {
  kmsEncryptionContext(envelope);
  userEncryptionContext(envelope);
  rewrapEncryptionContexts(envelope, 'arn:aws:kms:us-east-1:111122223333:key/target');
  checkBodyLength(size, envelope);
  if (envelope.version !== 'v1') serialiseEnvelope(envelope);
}

const KEYS = [...Object.values(MetaKey), 'x-amz-crypto-instr-file', 'owner'];
const keyName = fc.oneof(
  fc.constantFrom(...KEYS),
  fc.constantFrom(...KEYS).map((k) => `x-amz-meta-${k}`),
  fc.constantFrom(...KEYS).map((k) => k.toUpperCase()),
  fc.string({ maxLength: 20 }),
);
const encodedWord = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }).map(encodeS3MetadataValue),
  fc.uint8Array({ maxLength: 30 }).map((b) => `=?UTF-8?B?${Buffer.from(b).toString('base64')}?=`),
  fc.array(fc.base64String({ maxLength: 12 }), { maxLength: 4 }).map((ws) => ws.map((w) => `=?utf-8?b?${w}?=`).join(' ')),
);
const value = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.base64String({ maxLength: 80 }),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.constantFrom('115', '12', '02', '22', '128', '', 'kms', 'kms+context', 'AES/GCM', 'RSA-OAEP-SHA1', 'AES/GCM/NoPadding', 'AES/CBC/PKCS5Padding', '{}', 'null', '-1', '1e400', '18446744073709551616'),
  fc.json({ maxDepth: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 8 })).map((d) => JSON.stringify({ ...d, 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' })),
  encodedWord,
);
const metadata = fc.dictionary(keyName, value, { maxKeys: 14 });
const instructionFile = fc.option(
  fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.json({ maxDepth: 4 }),
    metadata.map((m) => JSON.stringify(m)),
    fc.dictionary(keyName, fc.oneof(value, fc.integer(), fc.double(), fc.constant(null), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 }))).map((m) => JSON.stringify(m)),
    fc.uint8Array({ maxLength: 300 }),
  ),
  { nil: undefined },
);
const size = fc.oneof(fc.nat(64), fc.nat(), fc.constantFrom(2 ** 36 - 16, 2 ** 36 + 17, Number.MAX_SAFE_INTEGER));

const seeds = [...v2Vectors.flatMap((v) => (v.metadata ? [v.metadata] : [])), ...resolvedV3Objects().map((v) => v.metadata)];

/** Small edits of a string: a character changed, dropped, doubled, or the value cut. */
const edit = fc.tuple(fc.nat(), fc.constantFrom('flip', 'drop', 'double', 'cut', 'pad', 'nul'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 2 }));
function applyEdit(text: string, [at, kind, char]: [number, string, string]): string {
  const i = text.length === 0 ? 0 : at % text.length;
  switch (kind) {
    case 'flip':
      return `${text.slice(0, i)}${char}${text.slice(i + 1)}`;
    case 'drop':
      return text.slice(0, i) + text.slice(i + 1);
    case 'double':
      return text.slice(0, i) + text.slice(i) + text.slice(i);
    case 'cut':
      return text.slice(0, i);
    case 'pad':
      return `${text}=`;
    default:
      return `${text.slice(0, i)}\u0000${text.slice(i)}`;
  }
}

describe(`metadata parser fuzzing (fast-check, ${RUNS} cases per property)`, () => {
  it('random metadata and instruction files', () => {
    fc.assert(
      fc.property(metadata, instructionFile, size, (meta, file, bytes) => {
        parsesOrTypedError(() => inspectMetadata(meta));
        parsesOrTypedError(() => useEnvelope(parseEnvelope(meta, file), bytes));
      }),
      { numRuns: RUNS },
    );
  });

  it('real metadata with its values edited, keys re-cased, values swapped', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.constantFrom(...KEYS), edit), { minLength: 1, maxLength: 4 }), fc.boolean(), size, (seed, edits, upper, bytes) => {
        const meta: Record<string, string> = {};
        for (const [k, v] of Object.entries(seed)) meta[upper ? k.toUpperCase() : k] = v;
        for (const [key, e] of edits) {
          const target = upper ? key.toUpperCase() : key;
          meta[target] = applyEdit(meta[target] ?? meta[upper ? MetaKey.iv.toUpperCase() : MetaKey.iv] ?? '', e);
        }
        parsesOrTypedError(() => useEnvelope(parseEnvelope(meta), bytes));
      }),
      { numRuns: RUNS },
    );
  });

  it('real envelopes moved into instruction files and damaged there', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds), edit, fc.constantFrom('object-keys-stay', 'all-moved', 'duplicated'), (seed, e, layout) => {
        const object: Record<string, string> = {};
        const file: Record<string, string> = {};
        for (const [k, v] of Object.entries(seed)) {
          const objectOnly = k === MetaKey.v3Cipher || k === MetaKey.v3Commitment || k === MetaKey.v3MessageId;
          if (layout === 'duplicated' || (layout === 'object-keys-stay' && objectOnly)) object[k] = v;
          if (layout !== 'object-keys-stay' || !objectOnly) file[k] = v;
        }
        const body = applyEdit(JSON.stringify(file), e);
        parsesOrTypedError(() => useEnvelope(parseEnvelope(object, body), 1024));
        parsesOrTypedError(() => parseInstructionFile(Buffer.from(body)));
      }),
      { numRuns: RUNS },
    );
  });

  it("S3's RFC 2047 metadata values, well-formed or not, decode or fail typed", () => {
    fc.assert(
      fc.property(fc.oneof(encodedWord, value, fc.string({ unit: 'binary', maxLength: 50 })), fc.string({ unit: 'grapheme', maxLength: 30 }), (raw, text) => {
        parsesOrTypedError(() => decodeS3MetadataValue(raw));
        // Text that is itself an RFC 2047 word is ambiguous in S3 metadata by construction.
        if (!text.includes('=?')) assert.equal(decodeS3MetadataValue(encodeS3MetadataValue(text)), text, 'what rekey writes, it reads back');
      }),
      { numRuns: RUNS },
    );
  });

  it('instruction file bodies of arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 512 }), fc.string({ unit: 'binary', maxLength: 512 }).map((s) => Buffer.from(s))), fc.dictionary(keyName, value, { maxKeys: 4 }), (body, meta) => {
        parsesOrTypedError(() => parseInstructionFile(body));
        parsesOrTypedError(() => parseEnvelope(meta, body));
      }),
      { numRuns: RUNS },
    );
  });

  it('reached both valid envelopes and typed failures', () => {
    const tried = [...tally.values()].reduce((a, b) => a + b, 0);
    assert.ok(tried >= 5 * RUNS, `${tried} inputs tried`);
    assert.ok((tally.get('ok') ?? 0) > RUNS / 10, 'some inputs parse');
    assert.ok(tally.size >= 6, `failures of several kinds: ${[...tally.keys()].join(', ')}`);
    process.stdout.write(`# fuzz-figures ${JSON.stringify({ properties: 5, runsPerProperty: RUNS, inputsTried: tried, byResult: Object.fromEntries([...tally].sort(([, a], [, b]) => b - a)) })}\n`);
  });
});
