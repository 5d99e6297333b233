import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DecryptCommand, GenerateDataKeyCommand } from '@aws-sdk/client-kms';
import type { RewrapRequest, RewrapResult } from '../../../src/kms/batcher.js';
import { KmsError } from '../../../src/kms/errors.js';
import { freshKmsKey, kmsEndpoints, type TestKey } from '../../helpers/stack.js';
import { kmsOperation, kmsThrottling, seededRandom, serverError } from '../../helpers/kms-fault-proxy.js';
import { openKmsHarness, reEncrypt, wrapFreshDataKey, type KmsHarness } from '../../helpers/kms-harness.js';

const CONTEXT = { 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding', team: 'storage' };

function okResult(result: RewrapResult | undefined): Extract<RewrapResult, { ok: true }> {
  assert.ok(result?.ok, `expected success, got ${result && !result.ok ? result.error.message : 'nothing'}`);
  return result;
}

function errorOf(result: RewrapResult | undefined): KmsError {
  assert.ok(result && !result.ok, 'expected a failure');
  assert.ok(result.error instanceof KmsError);
  return result.error;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

for (const kms of kmsEndpoints()) {
  describe(`KmsBatcher.rewrapMany against ${kms.name}`, () => {
    let h: KmsHarness;
    let oldKey: TestKey;
    let newKey: TestKey;

    before(async () => {
      h = await openKmsHarness({ random: seededRandom(7) }, kms);
      oldKey = await freshKmsKey(h.stack.kms);
      newKey = await freshKmsKey(h.stack.kms);
    });
    after(async () => {
      await h.close();
    });

    /** `distinct` wrapped keys under the old key, each repeated `copies` times, interleaved. */
    async function sharedKeyRequests(distinct: number, copies: number): Promise<RewrapRequest[]> {
      const blobs = await Promise.all(
        Array.from({ length: distinct }, () => wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT)),
      );
      return Array.from({ length: distinct * copies }, (_, i) => ({
        wrappedKey: blobs[i % distinct]!,
        sourceContext: CONTEXT,
        destinationContext: CONTEXT,
        sourceKeyId: oldKey.keyId,
      }));
    }

    test('200 objects sharing 10 data keys cost exactly 10 ReEncrypt calls; each result opens under the target', async () => {
      h.proxy.clearFaults();
      const { batcher, observer } = h.batcher({ concurrency: 4 });
      const plaintexts = new Map<string, Uint8Array>();
      const blobs: Uint8Array[] = [];
      for (let i = 0; i < 10; i++) {
        const dk = await h.stack.kms.send(
          new GenerateDataKeyCommand({ KeyId: oldKey.keyId, KeySpec: 'AES_256', EncryptionContext: CONTEXT }),
        );
        blobs.push(dk.CiphertextBlob!);
        plaintexts.set(base64(dk.CiphertextBlob!), dk.Plaintext!);
      }
      // Copies of the bytes and the same context in another key order must still count as one.
      const reordered = { team: 'storage', 'aws:x-amz-cek-alg': 'AES/GCM/NoPadding' };
      const requests: RewrapRequest[] = Array.from({ length: 200 }, (_, i) => ({
        wrappedKey: i % 3 === 0 ? Uint8Array.from(blobs[i % 10]!) : blobs[i % 10]!,
        sourceContext: i % 2 === 0 ? CONTEXT : reordered,
        destinationContext: i % 5 === 0 ? reordered : CONTEXT,
        sourceKeyId: oldKey.keyId,
      }));
      const before = { proxy: h.proxy.count(reEncrypt), limiter: h.limiter.acquired };

      const results = await batcher.rewrapMany(requests, newKey.keyId);

      assert.equal(observer.count('ReEncrypt'), 10, 'observer: one ReEncrypt per distinct wrapped key');
      assert.equal(h.proxy.count(reEncrypt) - before.proxy, 10, 'wire: one ReEncrypt per distinct wrapped key');
      assert.equal(h.limiter.acquired - before.limiter, 10, 'every call took a token from the shared limiter');
      assert.deepEqual(observer.batches, [{ requests: 200, distinct: 10 }]);
      assert.ok(h.proxy.maxInFlight <= 4, `at most 4 calls in flight, saw ${h.proxy.maxInFlight}`);
      assert.equal(results.length, 200);
      for (const [i, result] of results.entries()) {
        const ok = okResult(result);
        assert.equal(ok.keyId, newKey.arn);
        assert.equal(ok.sourceKeyId, oldKey.arn);
        assert.deepEqual(ok.ciphertext, okResult(results[i % 10]).ciphertext, 'same data key, same new blob');
        if (i >= 10) assert.notEqual(ok.ciphertext, okResult(results[i % 10]).ciphertext, 'but each object owns its bytes');
      }
      for (const [i, blob] of blobs.entries()) {
        const back = await h.stack.kms.send(
          new DecryptCommand({ CiphertextBlob: okResult(results[i]).ciphertext, KeyId: newKey.keyId, EncryptionContext: CONTEXT }),
        );
        assert.equal(back.KeyId, newKey.arn);
        assert.deepEqual(back.Plaintext, plaintexts.get(base64(blob)), 'the data key itself is unchanged');
        back.Plaintext?.fill(0);
      }
      for (const p of plaintexts.values()) p.fill(0);
    });

    test('batches sharing a data key, one after another or at once, cost one ReEncrypt per key for the whole batcher', async () => {
      h.proxy.clearFaults();
      const { batcher, observer } = h.batcher();
      const [a, b, c] = await Promise.all([1, 2, 3].map(() => wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT)));
      const request = (blob: Uint8Array): RewrapRequest => ({ wrappedKey: Uint8Array.from(blob), sourceContext: CONTEXT, destinationContext: CONTEXT, sourceKeyId: oldKey.keyId });
      const before = h.proxy.count(reEncrypt);

      const first = await batcher.rewrapMany([request(a!), request(b!)], newKey.keyId);
      const second = await batcher.rewrapMany([request(b!), request(a!), request(a!)], newKey.keyId);
      // Two batches at once: the second finds the first's call in flight and waits for it.
      const [third, fourth] = await Promise.all([batcher.rewrapMany([request(c!)], newKey.keyId), batcher.rewrapMany([request(c!), request(a!)], newKey.keyId)]);

      assert.equal(h.proxy.count(reEncrypt) - before, 3, 'wire: one ReEncrypt per distinct wrapped key across batches');
      assert.equal(observer.count('ReEncrypt'), 3);
      assert.deepEqual(okResult(second[1]).ciphertext, okResult(first[0]).ciphertext, 'the remembered result is the first call\'s');
      assert.notEqual(okResult(second[1]).ciphertext, okResult(first[0]).ciphertext, 'but each object still owns its bytes');
      okResult(second[1]).ciphertext.fill(0);
      assert.notDeepEqual(okResult(second[2]).ciphertext, okResult(second[1]).ciphertext, 'zeroing one copy leaves the cache intact');
      assert.deepEqual(okResult(fourth[0]).ciphertext, okResult(third[0]).ciphertext);
      assert.equal(okResult(fourth[1]).sourceKeyId, oldKey.arn);

      // Another destination key is another request, never an answer remembered for the first.
      const otherTarget = await freshKmsKey(h.stack.kms);
      const [moved] = await batcher.rewrapMany([request(a!)], otherTarget.keyId);
      assert.equal(okResult(moved).keyId, otherTarget.arn);
      assert.equal(h.proxy.count(reEncrypt) - before, 4);
    });

    test('a failed ReEncrypt is not remembered: the next batch asks KMS again', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher({ retry: { attempts: 1 } });
      const blob = await wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT);
      const request: RewrapRequest = { wrappedKey: blob, sourceContext: CONTEXT, destinationContext: CONTEXT, sourceKeyId: oldKey.keyId };
      const before = h.proxy.count(reEncrypt);

      h.proxy.inject({ fault: kmsThrottling(), match: reEncrypt, times: 1 });
      const [failed] = await batcher.rewrapMany([request, request], newKey.keyId);
      assert.equal(errorOf(failed).reason, 'kms-throttled');
      assert.equal(h.proxy.count(reEncrypt) - before, 1);

      const [retried] = await batcher.rewrapMany([request], newKey.keyId);
      assert.equal(okResult(retried).keyId, newKey.arn);
      assert.equal(h.proxy.count(reEncrypt) - before, 2, 'the failure was asked again');
      const [again] = await batcher.rewrapMany([request], newKey.keyId);
      assert.deepEqual(okResult(again).ciphertext, okResult(retried).ciphertext);
      assert.equal(h.proxy.count(reEncrypt) - before, 2, 'the success is remembered');

      // A failure that is not KMS' (the rate limiter's Redis) rejects the batch and is not remembered either.
      const broken = h.batcher({ limiter: { acquire: () => Promise.reject(new Error('Redis is read-only')) } }).batcher;
      await assert.rejects(broken.rewrapMany([request], newKey.keyId), /Redis is read-only/);
      await assert.rejects(broken.rewrapMany([request], newKey.keyId), /Redis is read-only/, 'asked again, not a remembered rejection');
    });

    test('Decrypt is never remembered: each plaintext data key comes from KMS and is the caller\'s alone', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher();
      const blob = await wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT);
      const decrypt = kmsOperation('Decrypt');
      const before = h.proxy.count(decrypt);
      const first = await batcher.decryptDataKey(blob, CONTEXT, oldKey.keyId);
      const copy = Buffer.from(first.plaintext);
      first.plaintext.fill(0);
      const second = await batcher.decryptDataKey(blob, CONTEXT, oldKey.keyId);
      assert.equal(h.proxy.count(decrypt) - before, 2, 'one Decrypt per call');
      assert.ok(second.plaintext.equals(copy), 'zeroing the first plaintext did not reach the second');
      second.plaintext.fill(0);
      copy.fill(0);
    });

    test('the cache is bounded: the least recently used request is forgotten first', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher({ rewrapCacheSize: 2 });
      const [a, b, c] = await Promise.all([1, 2, 3].map(() => wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT)));
      const rewrap = (blob: Uint8Array) => batcher.rewrapMany([{ wrappedKey: blob, sourceContext: CONTEXT, destinationContext: CONTEXT }], newKey.keyId);
      const before = h.proxy.count(reEncrypt);

      await rewrap(a!);
      await rewrap(b!);
      await rewrap(a!); // a is now the most recently used
      await rewrap(c!); // evicts b
      assert.equal(h.proxy.count(reEncrypt) - before, 3);
      await rewrap(a!);
      assert.equal(h.proxy.count(reEncrypt) - before, 3, 'a stayed');
      await rewrap(b!);
      assert.equal(h.proxy.count(reEncrypt) - before, 4, 'b was forgotten');
    });

    test('a different context is a different ReEncrypt, even for the same bytes', async () => {
      h.proxy.clearFaults();
      const { batcher, observer } = h.batcher();
      const blob = await wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT);
      const other = { ...CONTEXT, team: 'billing' };
      const results = await batcher.rewrapMany(
        [
          { wrappedKey: blob, sourceContext: CONTEXT, destinationContext: CONTEXT },
          { wrappedKey: blob, sourceContext: CONTEXT, destinationContext: other },
          { wrappedKey: blob, sourceContext: CONTEXT, destinationContext: other },
        ],
        newKey.keyId,
      );
      assert.equal(observer.count('ReEncrypt'), 2);
      const moved = results.map(okResult);
      await assert.rejects(
        h.stack.kms.send(new DecryptCommand({ CiphertextBlob: moved[1]!.ciphertext, EncryptionContext: CONTEXT })),
        { name: 'InvalidCiphertextException' },
        'the new blob is bound to the destination context',
      );
    });

    test('with 30% of calls throttled every rewrap still succeeds, and throttles are counted', async () => {
      h.proxy.clearFaults();
      h.proxy.inject({ fault: kmsThrottling(), match: reEncrypt, probability: 0.3 });
      const { batcher, observer } = h.batcher({ concurrency: 8 });
      const requests = await sharedKeyRequests(40, 2);
      const before = {
        calls: h.proxy.count(reEncrypt),
        throttled: h.proxy.count(reEncrypt, 'respond'),
        limiter: h.limiter.acquired,
      };

      const results = await batcher.rewrapMany(requests, newKey.keyId);

      results.forEach(okResult);
      const throttled = h.proxy.count(reEncrypt, 'respond') - before.throttled;
      const calls = h.proxy.count(reEncrypt) - before.calls;
      assert.ok(throttled > 0, 'the proxy throttled some calls');
      assert.equal(observer.count('ReEncrypt', 'kms-throttled'), throttled, 'every throttle is counted');
      assert.equal(observer.count('ReEncrypt', 'ok'), 40);
      assert.equal(calls, 40 + throttled, 'exactly one retry per throttle');
      assert.equal(h.limiter.acquired - before.limiter, calls, 'retries also go through the rate limiter');
      assert.equal(observer.retries.length, throttled);
      assert.ok(observer.retries.every((r) => r.reason === 'kms-throttled' && r.delaySeconds <= 0.02));
    });

    test('connection resets and 500s are retried as kms-error', async () => {
      h.proxy.clearFaults();
      h.proxy.inject({ fault: { kind: 'reset' }, match: reEncrypt, times: 2 });
      h.proxy.inject({ fault: serverError(500), match: reEncrypt, times: 2 });
      const { batcher, observer } = h.batcher({ concurrency: 1 });
      const requests = await sharedKeyRequests(3, 1);
      const before = h.proxy.count(reEncrypt);

      const results = await batcher.rewrapMany(requests, newKey.keyId);

      results.forEach(okResult);
      assert.equal(h.proxy.count(reEncrypt) - before, 3 + 4);
      assert.equal(observer.count('ReEncrypt', 'kms-error'), 4);
      assert.equal(observer.count('ReEncrypt', 'ok'), 3);
    });

    test('when throttling outlasts the attempts, the result is kms-throttled after exactly `attempts` calls', async () => {
      h.proxy.clearFaults();
      h.proxy.inject({ fault: kmsThrottling(), match: reEncrypt });
      const { batcher } = h.batcher({ retry: { attempts: 3, baseMs: 1, capMs: 5 } });
      const requests = await sharedKeyRequests(2, 5);
      const before = h.proxy.count(reEncrypt);

      const results = await batcher.rewrapMany(requests, newKey.keyId);

      h.proxy.clearFaults();
      assert.equal(h.proxy.count(reEncrypt) - before, 2 * 3);
      for (const result of results) {
        const error = errorOf(result);
        assert.equal(error.reason, 'kms-throttled');
        assert.equal(error.code, 'ThrottlingException');
        assert.equal(error.retryable, true);
      }
    });

    test('wrong context, wrong source key and unknown target fail once each, with their reason, and are not retried', async () => {
      h.proxy.clearFaults();
      const { batcher, observer } = h.batcher();
      const blob = await wrapFreshDataKey(h.stack.kms, oldKey.keyId, CONTEXT);
      const otherKey = await freshKmsKey(h.stack.kms);
      const wrongContext = { ...CONTEXT, team: 'billing' };
      const requests: RewrapRequest[] = [
        ...Array.from({ length: 5 }, () => ({ wrappedKey: blob, sourceContext: wrongContext, destinationContext: CONTEXT })),
        // AWS answers IncorrectKeyException; moto 5.2.5 ignores SourceKeyId and re-encrypts, so the
        // batcher's own check against the SourceKeyId in the response is what refuses it there.
        ...Array.from({ length: 5 }, () => ({
          wrappedKey: blob,
          sourceContext: CONTEXT,
          destinationContext: CONTEXT,
          sourceKeyId: otherKey.arn,
        })),
      ];
      const before = h.proxy.count(reEncrypt);

      const results = await batcher.rewrapMany(requests, newKey.keyId);

      assert.equal(h.proxy.count(reEncrypt) - before, 2, 'one call per distinct request, no retry');
      assert.equal(observer.retries.length, 0);
      const contextError = errorOf(results[0]);
      assert.equal(contextError.reason, 'wrong-key');
      assert.equal(contextError.code, 'InvalidCiphertextException');
      assert.match(contextError.message, /encryption context does not match/);
      const keyError = errorOf(results[5]);
      assert.equal(keyError.reason, 'wrong-key');
      assert.equal(keyError.code, 'IncorrectKeyException');
      assert.ok(keyError.message.includes(otherKey.arn) && keyError.message.includes(oldKey.arn));
      for (const result of results) {
        assert.equal(errorOf(result).retryable, false);
        assert.ok(!errorOf(result).message.includes(base64(blob).slice(0, 24)), 'no wrapped key in messages');
      }

      const unknownTarget = 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000';
      const beforeUnknown = h.proxy.count(reEncrypt);
      const [missing] = await batcher.rewrapMany(
        [{ wrappedKey: blob, sourceContext: CONTEXT, destinationContext: CONTEXT, sourceKeyId: oldKey.keyId }],
        unknownTarget,
      );
      assert.equal(h.proxy.count(reEncrypt) - beforeUnknown, 1);
      assert.equal(errorOf(missing).reason, 'wrong-key');
      assert.equal(errorOf(missing).code, 'NotFoundException');
    });

    test('a failing rate limiter fails the whole batch instead of reporting objects as KMS failures', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher({ limiter: { acquire: () => Promise.reject(new Error('Redis is read-only')) } });
      const before = h.proxy.count(reEncrypt);
      await assert.rejects(batcher.rewrapMany(await sharedKeyRequests(2, 2), newKey.keyId), /Redis is read-only/);
      assert.equal(h.proxy.count(reEncrypt) - before, 0, 'no KMS call without a token');
    });

    test('legacy `kms` wrap: the matdesc (kms_cmk_id included) is the context; kms_cmk_id becomes the new key', async () => {
      h.proxy.clearFaults();
      const { batcher } = h.batcher();
      const matdesc = { kms_cmk_id: oldKey.keyId, 'aws:ses:rule-name': 'inbound' };
      const newMatdesc = { ...matdesc, kms_cmk_id: newKey.keyId };
      const dk = await h.stack.kms.send(
        new GenerateDataKeyCommand({ KeyId: oldKey.keyId, KeySpec: 'AES_256', EncryptionContext: matdesc }),
      );

      const request = {
        wrappedKey: dk.CiphertextBlob!,
        sourceContext: matdesc,
        destinationContext: newMatdesc,
        sourceKeyId: oldKey.keyId,
      };
      const [result] = await batcher.rewrapMany([request], newKey.keyId);

      const moved = okResult(result);
      assert.equal(moved.keyId, newKey.arn);
      const back = await batcher.decryptDataKey(moved.ciphertext, newMatdesc, newKey.keyId);
      assert.ok(back.plaintext.equals(dk.Plaintext!));
      back.plaintext.fill(0);
      dk.Plaintext?.fill(0);
      await assert.rejects(
        batcher.decryptDataKey(moved.ciphertext, matdesc),
        { reason: 'wrong-key' },
        'the old matdesc no longer opens it',
      );
    });
  });
}
