import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { KmsError } from '../../../src/kms/errors.js';
import { freshKmsKey, kmsEndpoints, type TestKey } from '../../helpers/stack.js';
import { kmsOperation, kmsThrottling } from '../../helpers/kms-fault-proxy.js';
import { openKmsHarness, type KmsHarness } from '../../helpers/kms-harness.js';

const generate = kmsOperation('GenerateDataKey');
const decrypt = kmsOperation('Decrypt');
const CONTEXT = { 'aws:x-amz-cek-alg': '115', tenant: 't-1' };

for (const kms of kmsEndpoints()) {
  describe(`KmsBatcher data keys (rekey mode) against ${kms.name}`, () => {
    let h: KmsHarness;
    let key: TestKey;

    before(async () => {
      h = await openKmsHarness({}, kms);
      key = await freshKmsKey(h.stack.kms);
    });
    after(async () => {
      await h.close();
    });

    test('GenerateDataKey and Decrypt round-trip under the encryption context, into buffers the caller owns', async () => {
      h.proxy.clearFaults();
      const { batcher, observer } = h.batcher();

      const fresh = await batcher.generateDataKey(key.keyId, CONTEXT);
      const opened = await batcher.decryptDataKey(fresh.wrappedKey, CONTEXT, key.keyId);

      assert.equal(fresh.keyId, key.arn);
      assert.equal(opened.keyId, key.arn);
      assert.equal(fresh.plaintext.length, 32);
      assert.ok(opened.plaintext.equals(fresh.plaintext));
      assert.notEqual(opened.plaintext, fresh.plaintext);
      // A buffer of its own (not a slice of Node's shared pool), so zeroing it wipes every copy we made.
      assert.equal(fresh.plaintext.buffer.byteLength, 32);
      assert.equal(opened.plaintext.buffer.byteLength, 32);
      fresh.plaintext.fill(0);
      opened.plaintext.fill(0);
      assert.deepEqual(
        observer.calls.map((c) => [c.operation, c.result]),
        [
          ['GenerateDataKey', 'ok'],
          ['Decrypt', 'ok'],
        ],
      );
      assert.ok(observer.calls.every((c) => c.seconds >= 0 && c.seconds < 10));
    });

    test('Decrypt with another context is wrong-key, after one call', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher();
      const fresh = await batcher.generateDataKey(key.keyId, CONTEXT);
      fresh.plaintext.fill(0);
      const before = h.proxy.count(decrypt);

      await assert.rejects(batcher.decryptDataKey(fresh.wrappedKey, { ...CONTEXT, tenant: 't-2' }), (err: unknown) => {
        assert.ok(err instanceof KmsError);
        assert.equal(err.reason, 'wrong-key');
        assert.equal(err.code, 'InvalidCiphertextException');
        assert.equal(err.operation, 'Decrypt');
        return true;
      });
      assert.equal(h.proxy.count(decrypt) - before, 1);
    });

    test('Decrypt naming another key is refused after one call', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher();
      const other = await freshKmsKey(h.stack.kms);
      const fresh = await batcher.generateDataKey(key.keyId, CONTEXT);
      fresh.plaintext.fill(0);
      const before = h.proxy.count(decrypt);

      // AWS answers IncorrectKeyException (wrong-key); moto 5.2.5 answers AccessDeniedException (kms-denied).
      await assert.rejects(batcher.decryptDataKey(fresh.wrappedKey, CONTEXT, other.keyId), (err: unknown) => {
        assert.ok(err instanceof KmsError);
        assert.ok(['wrong-key', 'kms-denied'].includes(err.reason), err.reason);
        assert.equal(err.retryable, false);
        return true;
      });
      assert.equal(h.proxy.count(decrypt) - before, 1);
    });

    test('GenerateDataKey under an unknown key is wrong-key (NotFoundException), not retried', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher();
      const before = h.proxy.count(generate);
      await assert.rejects(batcher.generateDataKey('00000000-0000-4000-8000-000000000000', CONTEXT), {
        reason: 'wrong-key',
        code: 'NotFoundException',
      });
      assert.equal(h.proxy.count(generate) - before, 1);
    });

    test('throttled GenerateDataKey is retried through the limiter and succeeds', async () => {
      h.proxy.clearFaults();
      h.proxy.inject({ fault: kmsThrottling(), match: generate, times: 2 });
      const { batcher, observer } = h.batcher();
      const before = { calls: h.proxy.count(generate), limiter: h.limiter.acquired };

      const fresh = await batcher.generateDataKey(key.keyId, CONTEXT);
      fresh.plaintext.fill(0);

      assert.equal(h.proxy.count(generate) - before.calls, 3);
      assert.equal(h.limiter.acquired - before.limiter, 3);
      assert.equal(observer.count('GenerateDataKey', 'kms-throttled'), 2);
      assert.deepEqual(
        observer.retries.map((r) => [r.operation, r.reason, r.attempt]),
        [
          ['GenerateDataKey', 'kms-throttled', 1],
          ['GenerateDataKey', 'kms-throttled', 2],
        ],
      );
    });
  });
}
