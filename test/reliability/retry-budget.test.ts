import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { makeKmsClient, makeS3Client } from '../../src/config/clients.js';
import { OBJECT_BUDGET } from '../../src/retry/budget.js';
import { FaultProxy, kmsOperation, kmsThrottling, s3Error } from '../helpers/kms-fault-proxy.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../helpers/stack.js';
import { rawObject } from '../helpers/campaign.js';
import { Rotators, label } from '../helpers/rotators.js';
import { s3Operation } from '../helpers/s3-ops.js';
import { putSealed, seal } from '../helpers/sealed.js';

/**
 * Issue 12, point 3: every S3 and KMS error is classified once, and all retries of one object (the
 * SDK's for S3, the KMS batcher's) come out of one budget of 8 retries (and 60 s from a first failure). Counted on the wire by
 * fault proxies in front of moto's S3 and KMS. A request that succeeds earns a quarter of a retry, so a
 * large object's many part uploads are not failed by a few transient errors spread over them.
 */
describe('one retry policy: one classification, one budget per object', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let s3Proxy: FaultProxy;
  let kmsProxy: FaultProxy;
  let s3: S3Client;
  let rotators: Rotators;
  let bucket: string;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    s3Proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
    kmsProxy = await FaultProxy.start({ target: stack.config.kmsEndpoint! });
    s3 = makeS3Client({ ...stack.config, s3Endpoint: s3Proxy.url });
    // As a worker has it: the KMS batcher retries (paced by the rate limit), the SDK does not.
    const kms = makeKmsClient({ ...stack.config, kmsEndpoint: kmsProxy.url }, { retries: 'none' });
    rotators = new Rotators({ ...stack, kms }, newKey);
    bucket = await freshBucket(stack.s3);
  });
  after(async () => {
    await rotators.close();
    s3.destroy();
    await s3Proxy.close();
    await kmsProxy.close();
    await stack.close();
  });

  /** One object through both proxies with `faults` in place; the requests each proxy saw, by operation. */
  const rekeyWith = async (key: string, inject: () => void) => {
    await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(2000), { kmsKeyId: oldKey.keyId, format: 'v2' }));
    const before = await rawObject(stack.s3, bucket, key);
    const [s3Seen, kmsSeen] = [s3Proxy.requests.length, kmsProxy.requests.length];
    inject();
    try {
      const [outcome] = await rotators.rotate('rekey', s3, [{ bucket, key }]);
      const s3Requests = s3Proxy.requests.slice(s3Seen);
      const kmsRequests = kmsProxy.requests.slice(kmsSeen);
      const count = (op: Parameters<typeof s3Operation>[0]) => s3Requests.filter(s3Operation(op)).length;
      const kmsCount = (op: string) => kmsRequests.filter(kmsOperation(op)).length;
      return { outcome: outcome!, count, kmsCount, untouched: async () => assert.deepEqual(await rawObject(stack.s3, bucket, key), before) };
    } finally {
      s3Proxy.clearFaults();
      kmsProxy.clearFaults();
    }
  };

  test('S3 throttling on every read: 1 + 8 requests, then a final failed:s3-error', async () => {
    const run = await rekeyWith('throttled', () => s3Proxy.inject({ fault: s3Error('SlowDown', 503), match: s3Operation('GetObject') }));
    assert.equal(label(run.outcome), 'failed:s3-error', run.outcome.message);
    assert.equal(run.outcome.retryable, false, 'the budget is spent: the processor must not queue it again');
    assert.match(run.outcome.message, /retry budget spent/);
    assert.equal(run.count('GetObject'), 1 + OBJECT_BUDGET.retries);
    await run.untouched();
  });

  test('403 AccessDenied: one request, failed:s3-denied, never retried', async () => {
    const run = await rekeyWith('denied', () => s3Proxy.inject({ fault: s3Error('AccessDenied', 403), match: s3Operation('GetObject') }));
    assert.equal(label(run.outcome), 'failed:s3-denied', run.outcome.message);
    assert.equal(run.outcome.retryable, false);
    assert.equal(run.count('GetObject'), 1);
    await run.untouched();
  });

  test('409 ConditionalRequestConflict is retried and the object rotates; 412 is changed at once', async () => {
    const conflict = await rekeyWith('conflict', () => s3Proxy.inject({ fault: s3Error('ConditionalRequestConflict', 409), match: s3Operation('PutObject'), times: 1 }));
    assert.equal(label(conflict.outcome), 'rotated', conflict.outcome.message);
    assert.equal(conflict.count('PutObject'), 2);

    const changed = await rekeyWith('changed', () => s3Proxy.inject({ fault: s3Error('PreconditionFailed', 412), match: s3Operation('PutObject') }));
    assert.equal(label(changed.outcome), 'skipped:changed', changed.outcome.message);
    assert.equal(changed.count('PutObject'), 1);
    await changed.untouched();
  });

  test('a large object earns retries with the requests that succeed: 10 failed part uploads among 13 parts, rotated', async () => {
    const key = 'large';
    await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(60 * 1024 * 1024), { kmsKeyId: oldKey.keyId, format: 'v2' }));
    // Every other part upload fails until 10 have: more than the 8 retries of an object whose requests all fail.
    let parts = 0;
    s3Proxy.inject({ fault: s3Error('InternalError', 500), match: (r) => s3Operation('UploadPart')(r) && ++parts % 2 === 0, times: 10 });
    try {
      const [outcome] = await rotators.rotate('rekey', s3, [{ bucket, key }]);
      assert.equal(label(outcome!), 'rotated', outcome!.message);
      // 60 MiB and the 16-byte tag in 5 MiB parts: 13 parts, 10 of them sent twice.
      assert.equal(s3Proxy.requests.filter(s3Operation('UploadPart')).length, 13 + 10);
    } finally {
      s3Proxy.clearFaults();
    }
  });

  test('a write whose answer was lost, then whose retries spent the budget, is still found landed and recorded rotated', async () => {
    const run = await rekeyWith('lost-answer', () => {
      // The PUT lands but its answer is lost; every retry of it fails (a server that resets a retried
      // conditional PUT looks like this), and the first read that follows needs a retry of its own.
      s3Proxy.inject({ fault: { kind: 'drop-response' }, match: s3Operation('PutObject'), times: 1 });
      s3Proxy.inject({ fault: s3Error('InternalError', 500), match: s3Operation('PutObject') });
      const wrote = () => s3Proxy.requests.some((r) => s3Operation('PutObject')(r) && r.fault === 'drop-response');
      s3Proxy.inject({ fault: s3Error('SlowDown', 503), match: (r) => s3Operation('HeadObject')(r) && wrote(), times: 1 });
    });
    assert.deepEqual([label(run.outcome), run.outcome.oldKeyId], ['rotated', oldKey.arn], run.outcome.message);
    assert.match(run.outcome.message, /write intent/);
    assert.ok(run.count('PutObject') > OBJECT_BUDGET.retries, 'the PUT that landed, then retries until the budget was spent');
  });

  test('S3 and KMS retries of one object share the budget: 3 read retries leave 5 for a throttling KMS', async () => {
    const run = await rekeyWith('shared', () => {
      s3Proxy.inject({ fault: s3Error('SlowDown', 503), match: s3Operation('GetObject'), times: 3 });
      kmsProxy.inject({ fault: kmsThrottling(), match: kmsOperation('Decrypt') });
    });
    assert.equal(label(run.outcome), 'failed:kms-throttled', run.outcome.message);
    assert.equal(run.outcome.retryable, false);
    assert.equal(run.count('GetObject') - 1, 3, 'three read retries');
    assert.equal(run.kmsCount('Decrypt'), 1 + OBJECT_BUDGET.retries - 3, 'the rest of the budget went to Decrypt');
    await run.untouched();
  });
});
