import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openReportStore } from '../../../src/campaign/report-store.js';
import { verifyCampaign } from '../../../src/campaign/verify.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { Rewrapper } from '../../../src/rotate/rewrap.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { FaultProxy, kmsOperation } from '../../helpers/kms-fault-proxy.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { campaignSpec } from '../../helpers/spec.js';
import { freshBucket, openStackWithKeys, strictS3, type TestKey, type TestStack } from '../../helpers/stack.js';
import { makeKmsClient } from '../../../src/config/clients.js';

/**
 * The closing verification asks KMS which key each wrapped key is under, except for the wrapped keys
 * KMS handed to this process while it rotated them: their key was named then. Everything else is still
 * probed, and the counts are those of a verification that probes all.
 */
describe('closing verification of a campaign rotated in the same process', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let kmsProxy: FaultProxy;
  let reports: string;
  const pool = new CipherPool({ threads: 1 });

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys(strictS3()));
    kmsProxy = await FaultProxy.start({ target: stack.config.kmsEndpoint! });
    reports = await mkdtemp(join(tmpdir(), 'rekey-verify-'));
  });
  after(async () => {
    await pool.close();
    await kmsProxy.close();
    await stack.close();
    await rm(reports, { recursive: true, force: true });
  });

  function batcher(): KmsBatcher {
    const kms = makeKmsClient({ ...stack.config, kmsEndpoint: kmsProxy.url });
    return new KmsBatcher({ kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'verify', ratePerSecond: 1000 }) });
  }

  for (const mode of ['rekey', 'rewrap'] as const) {
    test(`${mode}: its own objects cost no probe; one it did not rotate is probed and counted`, async () => {
      const bucket = await freshBucket(stack.s3);
      const keys = ['a', 'b', 'c', 'd'];
      for (const key of keys) {
        await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(4096), { kmsKeyId: oldKey.keyId, format: key === 'b' ? 'v3' : 'v2' }));
      }
      const kms = batcher();
      const target = rotationTarget({ mode, targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
      const rotator = mode === 'rekey' ? new Rekeyer({ s3: stack.s3, kms, pool }, target) : new Rewrapper({ s3: stack.s3, kms }, target);
      const outcomes = await rotator.rotate(keys.map((key) => ({ bucket, key })), noJournal);
      assert.deepEqual(outcomes.map((o) => o.outcome), ['rotated', 'rotated', 'rotated', 'rotated']);
      // Written after the rotation, under the old key, by another writer.
      await putSealed(stack.s3, bucket, 'late', await seal(stack.kms, randomBytes(100), { kmsKeyId: oldKey.keyId, format: 'v2' }));

      const spec = campaignSpec([{ kind: 'listing', bucket, prefix: '' }], { mode, targetKey: newKey.keyId, targetKeyArn: newKey.arn, reportTo: reports });
      const probesBefore = kmsProxy.count(kmsOperation('ReEncrypt'));
      const verification = await verifyCampaign({ s3: stack.s3, kms, reports: openReportStore(stack.s3, reports, `${mode}-${bucket}`) }, spec);
      assert.equal(verification.scanned, 5);
      assert.deepEqual([verification.remaining, verification.byKey[oldKey.arn]?.object], [1, 1], 'the late object remains, under the old key');
      assert.equal(verification.kmsProbes, 1, 'only the object this process did not rotate');
      assert.equal(kmsProxy.count(kmsOperation('ReEncrypt')) - probesBefore, 1, 'on the wire too');

      // A verifier that rotated nothing (another worker) probes every one and counts the same.
      const other = await verifyCampaign({ s3: stack.s3, kms: batcher(), reports: openReportStore(stack.s3, reports, `${mode}-${bucket}-other`) }, spec);
      assert.deepEqual([other.remaining, other.scanned, other.kmsProbes], [1, 5, 5]);
    });
  }
});
