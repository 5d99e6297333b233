import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { makeS3Client } from '../../../src/config/clients.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { putInstructionFile } from '../../../scripts/seed/s3ec-writer.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../../helpers/stack.js';
import { decryptObject } from '../../helpers/verify.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { s3KeyOf, s3Operation } from '../../helpers/s3-ops.js';
import { FaultProxy } from '../../helpers/kms-fault-proxy.js';

/**
 * An S3 Encryption Client that keeps its envelope in an instruction file writes the object, then the
 * file. A rekey that reads between the two pairs the writer's new body with the old file: the content
 * does not open. That is another writer's write in progress, reported `changed` (the writer wins), not
 * damage; and rekey writes nothing over it.
 */
describe('a writer’s instruction-file write in progress while rekey reads', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let proxy: FaultProxy;
  const pool = new CipherPool({ threads: 1 });

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  });
  after(async () => {
    await pool.close();
    await proxy.close();
    await stack.close();
  });

  test('the new body read with the old file: skipped:changed, and the writer’s content reads back whole', async () => {
    const bucket = await freshBucket(stack.s3);
    await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, randomBytes(4000), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true }));
    // The writer's first step: its new body, whose envelope is not in its instruction file yet.
    const content = randomBytes(5000);
    const written = await seal(stack.kms, content, { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true });
    await putSealed(stack.s3, bucket, 'o', { ...written, instructionFile: undefined });

    const kms = new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'writer-in-progress', ratePerSecond: 1000 }) });
    const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
    const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
    try {
      proxy.inject({ fault: { kind: 'hold' }, match: (r) => s3Operation('GetObject')(r) && s3KeyOf(r.path) === 'o', times: 1 });
      const rotation = new Rekeyer({ s3: proxied, kms, pool }, target).rotate([{ bucket, key: 'o' }], noJournal);
      const held = await proxy.nextHeld(30_000);
      // The writer's second step lands while rekey reads the body.
      await putInstructionFile(stack.s3, bucket, 'o', written.instructionFile!);
      proxy.release(held, 'forward');
      const [outcome] = await rotation;
      assert.equal(`${outcome!.outcome}:${outcome!.reason}`, 'skipped:changed', outcome!.message);
      const read = await decryptObject(stack, bucket, 'o');
      assert.deepEqual([read.keyId, read.sha256], [oldKey.arn, createHash('sha256').update(content).digest('hex')]);
    } finally {
      proxied.destroy();
    }
  });
});
