import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { RekeyError } from '../../../src/errors.js';
import { putSmallObject, replaceMetadata } from '../../../src/s3/conditional-writes.js';
import { uploadReplacement } from '../../../src/s3/replacement-upload.js';
import { headObject, readSmallObject } from '../../../src/s3/snapshot.js';
import { readTagging } from '../../../src/s3/tagging.js';
import { recordingJournal } from '../../helpers/upload-journal.js';
import { freshBucket, openStack, strictS3, type TestStack } from '../../helpers/stack.js';

const MiB = 1024 * 1024;

async function putFixture(stack: TestStack, bucket: string, key: string, body: Buffer) {
  await stack.s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      Metadata: { owner: 'team-a', 'x-amz-key-v2': 'old' },
      ContentType: 'application/x-test',
      ContentLanguage: 'en',
      CacheControl: 'max-age=60',
      ContentDisposition: 'attachment; filename="a.bin"',
      Tagging: 'env=prod&class=secret',
    }),
  );
}

async function readBody(stack: TestStack, bucket: string, key: string): Promise<Buffer> {
  const out = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function openUploads(stack: TestStack, bucket: string): Promise<number> {
  const out = await stack.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return out.Uploads?.length ?? 0;
}


/** A body that yields `good` bytes and then fails, as a decrypt stream does on a bad tag. */
function failingBody(good: number, chunk = MiB): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= good) {
        this.destroy(new RekeyError('tag-mismatch', 'the old content did not authenticate'));
        return;
      }
      const n = Math.min(chunk, good - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
}

describe('conditional writes on a strict S3 (versitygw)', () => {
  let stack: TestStack;
  let bucket: string;
  before(async () => {
    stack = openStack(strictS3());
    bucket = await freshBucket(stack.s3);
  });
  after(() => stack.close());

  test('a metadata rewrite keeps headers and tags and changes only the metadata', async () => {
    const body = randomBytes(1000);
    await putFixture(stack, bucket, 'keep.bin', body);
    const snap = await headObject(stack.s3, bucket, 'keep.bin');
    await replaceMetadata(stack.s3, snap, { ...snap.metadata, 'x-amz-key-v2': 'new' });
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'keep.bin' }));
    assert.deepEqual(head.Metadata, { owner: 'team-a', 'x-amz-key-v2': 'new' });
    assert.equal(head.ContentType, 'application/x-test');
    assert.equal(head.ContentLanguage, 'en');
    assert.equal(head.CacheControl, 'max-age=60');
    assert.equal(head.ContentDisposition, 'attachment; filename="a.bin"');
    const tags = await stack.s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: 'keep.bin' }));
    assert.deepEqual(
      Object.fromEntries((tags.TagSet ?? []).map((t) => [t.Key, t.Value])),
      { env: 'prod', class: 'secret' },
    );
    assert.deepEqual(await readBody(stack, bucket, 'keep.bin'), body);
  });

  test('a metadata rewrite after a concurrent write fails as changed and the other write survives', async () => {
    await putFixture(stack, bucket, 'race.bin', randomBytes(100));
    const snap = await headObject(stack.s3, bucket, 'race.bin');
    const theirs = randomBytes(200);
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'race.bin', Body: theirs, Metadata: { by: 'them' } }));
    await assert.rejects(replaceMetadata(stack.s3, snap, { 'x-amz-key-v2': 'new' }), (err: unknown) => {
      assert.ok(err instanceof RekeyError);
      assert.equal(err.reason, 'changed');
      return true;
    });
    assert.deepEqual(await readBody(stack, bucket, 'race.bin'), theirs);
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'race.bin' }));
    assert.deepEqual(head.Metadata, { by: 'them' });
  });

  test('a streamed replacement keeps headers and tags, multipart, and clears its journal entry', async () => {
    await putFixture(stack, bucket, 'big.bin', randomBytes(10));
    const snap = await headObject(stack.s3, bucket, 'big.bin');
    const replacement = randomBytes(21 * MiB);
    const journal = recordingJournal();
    await uploadReplacement(
      stack.s3,
      {
        snapshot: snap,
        body: Readable.from([replacement.subarray(0, 7 * MiB), replacement.subarray(7 * MiB)]),
        metadata: { owner: 'team-a', 'x-amz-key-v2': 'new' },
        tagging: await readTagging(stack.s3, snap),
      },
      { partBytes: 5 * MiB, journal },
    );
    assert.equal(journal.seen.length, 1, 'one multipart upload was journaled');
    assert.equal(journal.open.size, 0, 'and cleared once complete');
    assert.deepEqual(await readBody(stack, bucket, 'big.bin'), replacement);
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'big.bin' }));
    assert.equal(head.ContentType, 'application/x-test');
    assert.equal(head.Metadata?.['x-amz-key-v2'], 'new');
    const tags = await stack.s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: 'big.bin' }));
    assert.equal(tags.TagSet?.length, 2);
  });

  test('a body that fails after several parts aborts the upload and leaves the original byte-identical', async () => {
    const original = randomBytes(3 * MiB);
    await putFixture(stack, bucket, 'fail.bin', original);
    const snap = await headObject(stack.s3, bucket, 'fail.bin');
    const journal = recordingJournal();
    await assert.rejects(
      uploadReplacement(
        stack.s3,
        { snapshot: snap, body: failingBody(17 * MiB), metadata: {}, tagging: undefined },
        { partBytes: 5 * MiB, journal },
      ),
      (err: unknown) => err instanceof RekeyError && err.reason === 'tag-mismatch',
    );
    assert.deepEqual(await readBody(stack, bucket, 'fail.bin'), original);
    assert.equal(await openUploads(stack, bucket), 0, 'no multipart upload is left open');
    assert.equal(journal.open.size, 0);
  });

  test('a streamed replacement loses to a concurrent writer, multipart and single-part', async () => {
    for (const size of [12 * MiB, 1000]) {
      const key = `race-${size}.bin`;
      await putFixture(stack, bucket, key, randomBytes(10));
      const snap = await headObject(stack.s3, bucket, key);
      const theirs = randomBytes(300);
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: theirs }));
      await assert.rejects(
        uploadReplacement(
          stack.s3,
          { snapshot: snap, body: Readable.from([randomBytes(size)]), metadata: {}, tagging: undefined },
          { partBytes: 5 * MiB },
        ),
        (err: unknown) => err instanceof RekeyError && err.reason === 'changed',
      );
      assert.deepEqual(await readBody(stack, bucket, key), theirs);
    }
    assert.equal(await openUploads(stack, bucket), 0);
  });

  test('a small conditional put creates only when absent and replaces only the version read', async () => {
    await putSmallObject(stack.s3, { bucket, key: 'a.instruction', body: '{"v":1}', metadata: {}, ifMatch: undefined });
    await assert.rejects(
      putSmallObject(stack.s3, { bucket, key: 'a.instruction', body: '{"v":2}', metadata: {}, ifMatch: undefined }),
      (err: unknown) => err instanceof RekeyError && err.reason === 'changed',
    );
    const first = await readSmallObject(stack.s3, bucket, 'a.instruction');
    await putSmallObject(stack.s3, { bucket, key: 'a.instruction', body: '{"v":3}', metadata: {}, ifMatch: first!.etag });
    await assert.rejects(
      putSmallObject(stack.s3, { bucket, key: 'a.instruction', body: '{"v":4}', metadata: {}, ifMatch: first!.etag }),
      (err: unknown) => err instanceof RekeyError && err.reason === 'changed',
    );
    assert.equal((await readSmallObject(stack.s3, bucket, 'a.instruction'))!.body.toString(), '{"v":3}');
    assert.equal(await readSmallObject(stack.s3, bucket, 'missing.instruction'), undefined);
  });

  test('HEAD of a missing object is gone', async () => {
    await assert.rejects(headObject(stack.s3, bucket, 'nope'), (err: unknown) => err instanceof RekeyError && err.reason === 'gone');
  });
});
