import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { asCipherLayerError } from '../../src/crypto/protocol.js';
import { asRekeyError, CipherError, FormatError, RekeyError } from '../../src/errors.js';

describe('asRekeyError: the one conversion of thrown values', () => {
  test('a RekeyError stays as it is, whatever the policy', () => {
    const err = new FormatError('bad-metadata', 'x-amz-key-v2 is not base64');
    assert.equal(asRekeyError(err), err);
    assert.equal(asCipherLayerError(err), err);
  });

  test('by default anything else is `internal` with its message', () => {
    const converted = asRekeyError(new TypeError('boom'));
    assert.equal(converted.constructor, RekeyError);
    assert.deepEqual([converted.reason, converted.message], ['internal', 'boom']);
    assert.equal(asRekeyError('plain string').message, 'plain string');
  });

  test('the crypto layer hides the message of an unexpected failure and keeps it as the cause', () => {
    const cause = new Error('detail that may describe the data');
    const converted = asCipherLayerError(cause);
    assert.ok(converted instanceof CipherError);
    assert.deepEqual([converted.reason, converted.message, converted.cause], ['internal', 'cipher failed unexpectedly', cause]);
  });
});
