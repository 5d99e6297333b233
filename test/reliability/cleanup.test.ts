import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { abortLeftovers } from '../../src/campaign/processor.js';
import { UploadJournals } from '../../src/campaign/upload-journals.js';
import { freshBucket, openStack, strictS3, type TestStack } from '../helpers/stack.js';

/**
 * Issue 12, point 5: the leftover sweep after a killed worker aborts the uploads rekey journaled, and
 * nothing else. Another writer's upload of the same key, started after rekey's intent and still
 * without parts, looks exactly like the one S3 may have made for a worker killed mid-request; it stays.
 */
describe('cleanup aborts only uploads rekey journaled', () => {
  let stack: TestStack;

  before(() => {
    stack = openStack(strictS3());
  });
  after(() => stack.close());

  const openUploadIds = async (bucket: string): Promise<string[]> =>
    ((await stack.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((u) => u.UploadId!).sort();

  const createUpload = async (bucket: string, key: string): Promise<string> =>
    (await stack.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))).UploadId!;

  test('a journaled upload is aborted; a part-less upload of another writer after an intent on the same key stays', async () => {
    const bucket = await freshBucket(stack.s3);
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' }));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'j', Body: 'x' }));
    const journal = new UploadJournals(stack.redis, stack.config.redisPrefix).of('cleanup-test');

    // rekey's intent for `k`, whose upload id never arrived (the worker died with the request in flight) …
    await journal.starting({ bucket, key: 'k', at: Date.now() - 1000 });
    // … another writer's upload of the same key, initiated since, no parts yet …
    const theirs = await createUpload(bucket, 'k');
    // … and an upload of `j` that rekey journaled in full.
    await journal.starting({ bucket, key: 'j', at: Date.now() });
    const ours = await createUpload(bucket, 'j');
    await journal.started({ bucket, key: 'j', uploadId: ours });

    const aborted = await abortLeftovers(stack.s3, journal, [
      { bucket, key: 'k' },
      { bucket, key: 'j' },
    ]);
    assert.equal(aborted, 1, 'one upload aborted');
    assert.deepEqual(await openUploadIds(bucket), [theirs], 'the other writer’s upload is still open, rekey’s is gone');
    assert.deepEqual(await journal.open(), [], 'the journal holds no upload');
    assert.deepEqual(await journal.intents(), [], 'and no intent');
  });
});
