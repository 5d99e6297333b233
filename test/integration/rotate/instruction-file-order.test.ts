import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../src/config/clients.js';
import type { CampaignSpec } from '../../../src/campaign/spec.js';
import { CampaignStore, type BatchInFlight } from '../../../src/campaign/store.js';
import { CipherPool } from '../../../src/crypto/pool.js';
import { KmsBatcher } from '../../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import type { ObjectOutcome, ObjectRef } from '../../../src/rotate/outcome.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { rotationTarget } from '../../../src/rotate/target.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../../helpers/stack.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { s3KeyOf, s3Operation } from '../../helpers/s3-ops.js';
import { FaultProxy } from '../../helpers/kms-fault-proxy.js';

type Order = 'before' | 'while' | 'after';

/**
 * An object whose envelope is in its instruction file is two entries of a campaign, taken by whichever
 * workers get them, in any order. A rekey moves the envelope into the object's metadata and then drops
 * the file, so for a moment the file looks orphaned. Whatever the order, the file is never reported as an
 * orphan (nor removed as one) because of the campaign's own move.
 */
describe('an instruction file and its object, rekeyed in any order', () => {
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

  async function exists(bucket: string, key: string): Promise<boolean> {
    try {
      await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    } catch {
      return false;
    }
  }

  /** One object with its envelope in `o.instruction`, in a campaign of its own; the two entries' outcomes. */
  async function rekeyBoth(order: Order, removeOrphans: boolean): Promise<{ object: ObjectOutcome; file: ObjectOutcome; fileLeft: boolean }> {
    const bucket = await freshBucket(stack.s3);
    await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, randomBytes(3000), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true }));
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    const spec: CampaignSpec = {
      name: `instruction file ${order}`, mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, sourceKeyArns: [], targetFormat: 'same',
      priority: 'incident', sources: [{ kind: 'listing', bucket, prefix: '' }], kmsRequestsPerSecond: 1000, batchSize: 10, reportTo: 'unused',
    };
    const id = await store.create(spec);
    const kms = new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: id, ratePerSecond: 1000 }) });
    const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [], removeOrphanInstructionFiles: removeOrphans });
    // The object and the file go to two workers, each with the flight of its own batch.
    const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
    const objectWorker = new Rekeyer({ s3: proxied, kms, pool }, target);
    const fileWorker = new Rekeyer({ s3: stack.s3, kms, pool }, target);
    const rotate = async (worker: Rekeyer, flight: BatchInFlight, ref: ObjectRef) => {
      const [outcome] = await worker.rotate([ref], noJournal, async (o) => void (await flight.settle(o)), flight);
      return outcome!;
    };
    const objectRef = { bucket, key: 'o' };
    const fileRef = { bucket, key: 'o.instruction' };
    const objectFlight = store.inFlight(id, 'object-batch');
    const fileFlight = store.inFlight(id, 'file-batch');
    try {
      if (order === 'before') {
        const file = await rotate(fileWorker, fileFlight, fileRef);
        return { file, object: await rotate(objectWorker, objectFlight, objectRef), fileLeft: await exists(bucket, 'o.instruction') };
      }
      if (order === 'after') {
        const object = await rotate(objectWorker, objectFlight, objectRef);
        return { object, file: await rotate(fileWorker, fileFlight, fileRef), fileLeft: await exists(bucket, 'o.instruction') };
      }
      // While: the object is written with its envelope in metadata, and the drop of its file is held.
      proxy.inject({ fault: { kind: 'hold' }, match: (r) => s3Operation('DeleteObject')(r) && s3KeyOf(r.path) === 'o.instruction', times: 1 });
      const objectDone = rotate(objectWorker, objectFlight, objectRef);
      const held = await proxy.nextHeld(30_000);
      const file = await rotate(fileWorker, fileFlight, fileRef);
      assert.equal(await exists(bucket, 'o.instruction'), true, 'the file is still there while its object is being moved');
      proxy.release(held, 'forward');
      return { file, object: await objectDone, fileLeft: await exists(bucket, 'o.instruction') };
    } finally {
      proxied.destroy();
    }
  }

  const expected: Record<Order, string> = { before: 'skipped:instruction-file', while: 'skipped:instruction-file', after: 'skipped:gone' };
  for (const order of ['before', 'while', 'after'] as const) {
    for (const removeOrphans of [false, true]) {
      test(`the file taken ${order} its object's rekey${removeOrphans ? ', orphans removed' : ''}: ${expected[order]}, and the object's rekey drops it`, async () => {
        const { object, file, fileLeft } = await rekeyBoth(order, removeOrphans);
        assert.deepEqual([object.outcome, object.oldKeyId], ['rotated', oldKey.arn]);
        assert.equal(`${file.outcome}:${file.reason}`, expected[order], file.message);
        assert.equal(fileLeft, false);
      });
    }
  }
});
