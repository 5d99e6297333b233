import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DisableKeyCommand } from '@aws-sdk/client-kms';
import type { ReasonCode } from '../../../src/errors.js';
import { KmsError } from '../../../src/kms/errors.js';
import { freshKmsKey, kmsEndpoints, localKms, type TestKey } from '../../helpers/stack.js';
import { kmsError, kmsOperation, serverError, type Fault } from '../../helpers/kms-fault-proxy.js';
import { openKmsHarness, reEncrypt, wrapFreshDataKey, type KmsHarness } from '../../helpers/kms-harness.js';

const generate = kmsOperation('GenerateDataKey');

interface Case {
  readonly fault: Fault;
  readonly reason: ReasonCode;
  readonly retryable: boolean;
  readonly code: string;
}

/**
 * Errors moto never sends (disabled and pending-deletion keys keep working there; throttling and
 * faults do not happen), answered by the proxy in KMS' wire format and parsed by the real SDK.
 */
function wire(code: string, reason: ReasonCode, retryable: boolean, status = 400, message?: string): Case {
  return { fault: kmsError(code, { status, ...(message ? { message } : {}) }), reason, retryable, code };
}

const CASES: readonly Case[] = [
  wire('ThrottlingException', 'kms-throttled', true),
  wire('LimitExceededException', 'kms-throttled', true),
  wire('TooManyRequestsException', 'kms-throttled', true, 429),
  wire('KMSInternalException', 'kms-error', true, 500),
  wire('KeyUnavailableException', 'kms-error', true, 500),
  wire('DependencyTimeoutException', 'kms-error', true, 503),
  { fault: serverError(502), reason: 'kms-error', retryable: true, code: 'Unknown' },
  { fault: { kind: 'reset' }, reason: 'kms-error', retryable: true, code: 'ECONNRESET' },
  wire('IncorrectKeyException', 'wrong-key', false),
  wire('InvalidCiphertextException', 'wrong-key', false),
  wire('NotFoundException', 'wrong-key', false),
  wire('DisabledException', 'kms-disabled', false),
  wire('KMSInvalidStateException', 'kms-disabled', false),
  wire('AccessDeniedException', 'kms-denied', false),
  wire('SomethingNewException', 'kms-denied', false, 400, 'User: arn:aws:iam::123456789012:role/w is not authorized to do it'),
  wire('ValidationException', 'kms-rejected', false),
];

for (const kms of kmsEndpoints()) {
  describe(`KMS errors over the wire, through the real SDK, classified against ${kms.name}`, () => {
    let h: KmsHarness;
    let key: TestKey;

    before(async () => {
      h = await openKmsHarness({}, kms);
      key = await freshKmsKey(h.stack.kms);
    });
    after(async () => {
      await h.close();
    });

    for (const c of CASES) {
      const label = c.fault.kind === 'respond' ? `HTTP ${c.fault.status} ${c.code}` : c.fault.kind;
      test(`${label} → ${c.reason}${c.retryable ? ', retried' : ', not retried'}`, async () => {
        h.proxy.clearFaults();
        h.proxy.inject({ fault: c.fault, match: generate, times: 1 });
        const { batcher, observer } = h.batcher();
        const before = h.proxy.count(generate);

        if (c.retryable) {
          const fresh = await batcher.generateDataKey(key.keyId, {});
          fresh.plaintext.fill(0);
          assert.equal(h.proxy.count(generate) - before, 2);
          assert.deepEqual(
            observer.calls.map((e) => e.result),
            [c.reason, 'ok'],
          );
          return;
        }
        await assert.rejects(batcher.generateDataKey(key.keyId, {}), (err: unknown) => {
          assert.ok(err instanceof KmsError);
          assert.deepEqual([err.reason, err.retryable, err.code, err.operation], [c.reason, false, c.code, 'GenerateDataKey']);
          assert.match(err.message, /^GenerateDataKey: /);
          assert.doesNotMatch(err.message, /\n/);
          return true;
        });
        assert.equal(h.proxy.count(generate) - before, 1);
      });
    }

    test('a ciphertext echoed in an error message is redacted', async () => {
      const blob = randomBytes(120).toString('base64');
      const hex = randomBytes(32).toString('hex');
      h.proxy.clearFaults();
      h.proxy.inject({
        fault: kmsError('ValidationException', { message: `bad request {"CiphertextBlob":"${blob}","Plaintext":"${hex}"}` }),
        match: generate,
        times: 1,
      });
      const { batcher } = h.batcher();
      await assert.rejects(batcher.generateDataKey(key.keyId, {}), (err: unknown) => {
        assert.ok(err instanceof KmsError);
        assert.ok(!err.message.includes(blob.slice(0, 40)) && !err.message.includes(hex.slice(0, 40)), err.message);
        assert.match(err.message, /\[redacted\]/);
        return true;
      });
    });
  });
}

/** moto lets a disabled key keep working (docs/design.md §8.1); local-kms refuses it, as AWS does. */
describe('a disabled key, as local-kms really answers it', () => {
  let h: KmsHarness;

  before(async () => {
    h = await openKmsHarness({}, localKms());
  });
  after(async () => {
    await h.close();
  });

  test('GenerateDataKey, Decrypt and ReEncrypt under a disabled key are kms-disabled, each after one call', async () => {
    const context = { 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' };
    const source = await freshKmsKey(h.stack.kms);
    const target = await freshKmsKey(h.stack.kms);
    const blob = await wrapFreshDataKey(h.stack.kms, source.keyId, context);
    await h.stack.kms.send(new DisableKeyCommand({ KeyId: source.keyId }));
    const { batcher, observer } = h.batcher();
    const refused = (operation: string) => (err: unknown) => {
      assert.ok(err instanceof KmsError);
      assert.deepEqual([err.reason, err.retryable, err.operation], ['kms-disabled', false, operation]);
      return true;
    };

    await assert.rejects(batcher.generateDataKey(source.keyId, context), refused('GenerateDataKey'));
    await assert.rejects(batcher.decryptDataKey(blob, context, source.keyId), refused('Decrypt'));
    const beforeRewrap = h.proxy.count(reEncrypt);
    const [result] = await batcher.rewrapMany([{ wrappedKey: blob, sourceContext: context, destinationContext: context }], target.keyId);
    assert.equal(result?.ok, false);
    if (result?.ok === false) refused('ReEncrypt')(result.error);
    assert.equal(h.proxy.count(reEncrypt) - beforeRewrap, 1);
    assert.equal(observer.retries.length, 0, 'a disabled key is not retried');
  });
});
