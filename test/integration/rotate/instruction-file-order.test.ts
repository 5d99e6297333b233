import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { makeKmsClient, makeS3Client } from '../../../src/config/clients.js';
import type { CampaignSpec } from '../../../src/campaign/spec.js';
import { CampaignStore, type BatchInFlight } from '../../../src/campaign/store.js';
import type { ObjectOutcome, ObjectRef } from '../../../src/rotate/outcome.js';
import { Rekeyer } from '../../../src/rotate/rekey.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { freshBucket } from '../../helpers/stack.js';
import { closeRotationSuite, openRotationSuite, type RotationSuite } from '../../helpers/rotation-suite.js';
import { Rotators } from '../../helpers/rotators.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { s3KeyOf, s3Operation } from '../../helpers/s3-ops.js';
import { FaultProxy, kmsOperation } from '../../helpers/kms-fault-proxy.js';
import { decryptObject } from '../../helpers/verify.js';
import { putInstructionFile } from '../../../scripts/seed/s3ec-writer.js';

type Order = 'before' | 'while' | 'after';

/**
 * An object whose envelope is in its instruction file is two entries of a campaign, taken by whichever
 * workers get them, in any order. A rekey moves the envelope into the object's metadata and then drops
 * the file, so for a moment the file looks orphaned. Whatever the order, the file is never reported as an
 * orphan (nor removed as one) because of the campaign's own move. Another writer's two-step write seen
 * half-done is that writer's, never damage.
 */
describe('an instruction file and its object, moved in any order by rekey and by other writers', () => {
  let { stack, oldKey, newKey, proxy, rotators } = {} as RotationSuite;
  before(async () => ({ stack, oldKey, newKey, proxy, rotators } = await openRotationSuite()));
  after(() => closeRotationSuite({ stack, proxy, rotators }));

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
    // The object and the file go to two workers, each with the flight of its own batch.
    const proxied = makeS3Client({ ...stack.config, s3Endpoint: proxy.url });
    const objectWorker = rotators.rotator('rekey', proxied, { removeOrphanInstructionFiles: removeOrphans });
    const fileWorker = rotators.rotator('rekey', stack.s3, { removeOrphanInstructionFiles: removeOrphans });
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

  /**
   * An S3 Encryption Client that keeps its envelope in an instruction file writes the object, then the
   * file. A rekey that reads between the two pairs the writer's new body with the old file: the content
   * does not open. That is another writer's write in progress, reported `changed` (the writer wins), not
   * damage; and rekey writes nothing over it.
   */
  test('the new body read with the old file: skipped:changed, and the writer’s content reads back whole', async () => {
    const bucket = await freshBucket(stack.s3);
    await putSealed(stack.s3, bucket, 'o', await seal(stack.kms, randomBytes(4000), { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true }));
    // The writer's first step: its new body, whose envelope is not in its instruction file yet.
    const content = randomBytes(5000);
    const written = await seal(stack.kms, content, { kmsKeyId: oldKey.keyId, format: 'v2', instructionFile: true });
    await putSealed(stack.s3, bucket, 'o', { ...written, instructionFile: undefined });

    // rekey has read the new body's headers and the old file, and holds its new data key's request.
    const kmsProxy = await FaultProxy.start({ target: stack.config.kmsEndpoint! });
    const kms = makeKmsClient({ ...stack.config, kmsEndpoint: kmsProxy.url });
    const held = new Rotators({ ...stack, kms }, newKey);
    try {
      kmsProxy.inject({ fault: { kind: 'hold' }, match: kmsOperation('GenerateDataKey'), times: 1 });
      const rotation = held.rotateOne('rekey', stack.s3, bucket, 'o');
      const request = await kmsProxy.nextHeld(30_000);
      // The writer's second step lands while rekey is between its read of the file and its read of the body.
      await putInstructionFile(stack.s3, bucket, 'o', written.instructionFile!);
      kmsProxy.release(request, 'forward');
      const outcome = await rotation;
      assert.equal(`${outcome.outcome}:${outcome.reason}`, 'skipped:changed', outcome.message);
      const read = await decryptObject(stack, bucket, 'o');
      assert.deepEqual([read.keyId, read.sha256], [oldKey.arn, createHash('sha256').update(content).digest('hex')]);
    } finally {
      await held.close();
      kms.destroy();
      await kmsProxy.close();
    }
  });
});
