import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CopyObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../src/config/clients.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { Rewrapper } from '../../../src/rotate/rewrap.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../../helpers/stack.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { s3KeyOf, s3Operation } from '../../helpers/s3-ops.js';
import { FaultProxy } from '../../helpers/kms-fault-proxy.js';

/**
 * A metadata-only update keeps the ETag, so rekey's ETag condition cannot see one made between its
 * read and its write. In a versioned bucket the history can: rekey reports the version it would
 * otherwise silently overwrite, and purges nothing.
 */
describe('a concurrent metadata-only update in a versioned bucket is reported, never silently lost', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let proxy: FaultProxy;
  const pool = new CipherPool({ threads: 1 });
  const batcher = () => new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'lost-update-test', ratePerSecond: 500 }) });

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  });
  after(async () => {
    await pool.close();
    await proxy.close();
    await stack.close();
  });

  for (const mode of ['rewrap', 'rekey'] as const) {
    test(`${mode}: the version between rekey's read and its write is named`, async () => {
      const bucket = await freshBucket(stack.s3, { versioned: true });
      const sealed = await seal(stack.kms, randomBytes(4000), { kmsKeyId: oldKey.keyId, format: 'v2' });
      await putSealed(stack.s3, bucket, 'o', sealed, { Metadata: { owner: 'a' } });
      const read = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'o' }));

      const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
      const kms = batcher();
      const target = rotationTarget({ mode, targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [], purgeReplacedVersions: true });
      const rotator = mode === 'rekey' ? new Rekeyer({ s3: proxied, kms, pool }, target) : new Rewrapper({ s3: proxied, kms }, target);
      const write = mode === 'rekey' ? 'PutObject' : 'CopyObject';
      proxy.inject({ fault: { kind: 'hold' }, match: (r) => s3Operation(write)(r) && s3KeyOf(r.path) === 'o', times: 1 });
      try {
        const rotating = rotator.rotate([{ bucket, key: 'o' }], noJournal);
        const held = await proxy.nextHeld(30_000);
        // Another writer changes only the metadata: a new version with the same ETag.
        await stack.s3.send(new CopyObjectCommand({ Bucket: bucket, Key: 'o', CopySource: `${bucket}/o`, MetadataDirective: 'REPLACE', Metadata: { ...sealed.metadata, owner: 'b' } }));
        const foreign = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'o' }));
        assert.equal(foreign.ETag, read.ETag, 'a metadata-only update keeps the ETag');
        proxy.release(held, 'forward');
        const [outcome] = await rotating;
        assert.equal(outcome!.outcome, 'failed', outcome!.message);
        assert.equal(outcome!.reason, 'lost-update');
        assert.match(outcome!.message, new RegExp(`version ${foreign.VersionId}`));
        assert.match(outcome!.message, new RegExp(`read \\(version ${read.VersionId}\\)`));
        assert.equal(outcome!.newKeyId, newKey.arn, 'the rotation stands and says so');
        assert.equal(outcome!.purgedVersions, undefined, 'nothing is purged');
        const versions = [read.VersionId, foreign.VersionId];
        for (const versionId of versions) await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'o', VersionId: versionId }));
      } finally {
        proxied.destroy();
      }
    });
  }

  test('without a concurrent update, a versioned rotation is rotated', async () => {
    const bucket = await freshBucket(stack.s3, { versioned: true });
    await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, randomBytes(100), { kmsKeyId: oldKey.keyId, format: 'v2' }));
    const target = rotationTarget({ mode: 'rewrap', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
    const [outcome] = await new Rewrapper({ s3: stack.s3, kms: batcher() }, target).rotate([{ bucket, key: 'o' }], noJournal);
    assert.equal(outcome!.outcome, 'rotated', outcome!.message);
  });
});
