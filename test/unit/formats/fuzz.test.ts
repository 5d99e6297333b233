import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FormatError, REASON_CODES } from '../../../src/errors.js';
import { MetaKey } from '../../../src/formats/keys.js';
import { inspectMetadata, parseEnvelope } from '../../../src/formats/parse.js';
import { serialiseEnvelope } from '../../../src/formats/serialise.js';
import { resolvedV3Objects, v2Vectors } from '../../helpers/vectors.js';

const FORMAT_REASONS = new Set(['unknown-format', 'not-encrypted', 'mixed-format', 'bad-metadata', 'missing-instruction-file', 'unsupported-algorithm']);

/** Parsing either succeeds or fails with a FormatError carrying a format reason code; never anything else. */
function parsesOrFormatError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof FormatError, `not a FormatError: ${String(e)}`);
    assert.ok(FORMAT_REASONS.has(e.reason) && REASON_CODES.includes(e.reason), e.reason);
  }
}

const keys = [...Object.values(MetaKey), 'x-amz-meta-x-amz-iv', 'X-Amz-Key-V2', 'x-amz-crypto-instr-file', 'other'];
const value = fc.oneof(
  fc.string(),
  fc.base64String(),
  fc.constantFrom('115', '12', '02', '128', 'kms', 'kms+context', 'AES/GCM/NoPadding', 'AES/CBC/PKCS5Padding', '{}', '{"aws:x-amz-cek-alg":"115"}', '=?UTF-8?B?w4Q=?='),
  fc.uint8Array({ minLength: 0, maxLength: 40 }).map((b) => Buffer.from(b).toString('base64')),
);
const metadata = fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 10 });
const seeds = [...v2Vectors.flatMap((v) => (v.metadata ? [v.metadata] : [])), ...resolvedV3Objects().map((v) => v.metadata)];

describe('parser robustness (fast-check)', () => {
  it('never crashes on random metadata and instruction files', () => {
    fc.assert(
      fc.property(metadata, fc.option(fc.oneof(fc.string(), fc.json(), metadata.map((m) => JSON.stringify(m)))), (meta, file) => {
        parsesOrFormatError(() => inspectMetadata(meta));
        parsesOrFormatError(() => parseEnvelope(meta, file ?? undefined));
      }),
      { numRuns: 2000 },
    );
  });

  it('never crashes when real metadata is mutated', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.constantFrom(...keys), fc.option(value), (seed, key, replacement) => {
        const meta: Record<string, string> = { ...seed };
        if (replacement === null) delete meta[key];
        else meta[key] = replacement;
        parsesOrFormatError(() => {
          const envelope = parseEnvelope(meta);
          if (envelope.version !== 'v1') assert.deepEqual(parseEnvelope(serialiseEnvelope(envelope).objectMetadata), envelope);
        });
      }),
      { numRuns: 2000 },
    );
  });
});
