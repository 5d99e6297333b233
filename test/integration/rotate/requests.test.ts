import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { GetObjectTaggingCommand, HeadObjectCommand, PutObjectCommand, PutObjectTaggingCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../src/config/clients.js';
import { openObject } from '../../../src/s3/snapshot.js';
import { noJournal } from '../../../src/s3/upload-journal.js';
import { readTagging } from '../../../src/s3/tagging.js';
import { closeRotationSuite, openRotationSuite, type RotationSuite } from '../../helpers/rotation-suite.js';
import { s3KeyOf, s3OperationOf, type S3Operation } from '../../helpers/s3-ops.js';
import { putSealed, seal } from '../../helpers/sealed.js';
import { freshBucket, strictS3 } from '../../helpers/stack.js';
import { decryptObject } from '../../helpers/verify.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * What a rekey sends per object, counted on the wire: the GET that reads the envelope also carries the
 * body, so there is no HEAD; tags are asked for only where S3 says there are some, once the bucket's
 * first answer showed the tag count can be trusted. Nothing of what a rewrite keeps is lost for it.
 */
for (const server of ['versitygw', 'moto'] as const) {
  describe(`rekey's requests per object (${server})`, () => {
    let { stack, oldKey, newKey, proxy, rotators } = {} as RotationSuite;
    before(async () => ({ stack, oldKey, newKey, proxy, rotators } = await openRotationSuite(server === 'versitygw' ? strictS3() : {})));
    after(() => closeRotationSuite({ stack, proxy, rotators }));

    const proxied = () => makeS3Client({ ...stack.config, s3Endpoint: proxy.url, s3ForcePathStyle: true });

    async function sealedObject(bucket: string, key: string, bytes: number, extra: Parameters<typeof putSealed>[4] = {}) {
      const sealed = await seal(stack.kms, randomBytes(bytes), { kmsKeyId: oldKey.keyId, format: key.endsWith('3') ? 'v3' : 'v2' });
      await putSealed(stack.s3, bucket, key, sealed, extra);
      return sealed;
    }

    test('one GET per body, no HEAD, tags read only where counted; tags, headers and content kept', async () => {
      const bucket = await freshBucket(stack.s3);
      const keys = ['a-v2', 'b-v3', 'c-v2', 'd-v3', 'e-v2'];
      const sealed = new Map<string, Awaited<ReturnType<typeof sealedObject>>>();
      for (const [i, key] of keys.entries()) {
        const tagged = key === 'c-v2' ? { Tagging: 'team=blue&class=secret' } : {};
        sealed.set(key, await sealedObject(bucket, key, i === 4 ? 6 * MiB : 16 * KiB, { ...tagged, ContentType: 'application/x-test' }));
      }
      const s3 = proxied();
      const rekeyer = rotators.rotator('rekey', s3);
      // One at a time, so the first object's tagging answer is in before the others are read.
      const outcomes = [];
      for (const key of keys) outcomes.push(...(await rekeyer.rotate([{ bucket, key }], noJournal)));
      s3.destroy();
      assert.deepEqual(outcomes.map((o) => `${o.ref.key}:${o.outcome}`), keys.map((k) => `${k}:rotated`));

      const onWire = (op: S3Operation, key: string) => proxy.count((r) => s3OperationOf(r) === op && s3KeyOf(r.path) === key);
      for (const key of keys) {
        assert.equal(onWire('HeadObject', key), 0, `${key}: no HEAD`);
        assert.equal(onWire('GetObject', key), 1, `${key}: its body read once, by the GET that read its envelope`);
      }
      // The bucket's first object proves the count (and the permission to read tags); then only the tagged one.
      assert.deepEqual(keys.map((k) => onWire('GetObjectTagging', k)), [1, 0, 1, 0, 0]);

      for (const key of keys) {
        const now = await decryptObject(stack, bucket, key);
        assert.equal(now.sha256, sealed.get(key)!.plaintextSha256, key);
        assert.equal(now.keyId, newKey.arn, key);
        const tags = await stack.s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key }));
        const expected = key === 'c-v2' ? [['class', 'secret'], ['team', 'blue']] : [];
        assert.deepEqual((tags.TagSet ?? []).map((t) => [t.Key, t.Value]).sort(), expected, `${key}: tags`);
        assert.equal((await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentType, 'application/x-test', `${key}: headers`);
      }
    });

    test('a bucket whose first tagged object came without a count reads the tags of every object', async () => {
      const bucket = await freshBucket(stack.s3);
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'x', Body: 'x', Tagging: 'k=v' }));
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'y', Body: 'y' }));
      const s3 = proxied();
      // A count missing where S3 holds tags: what a server that never sends one looks like.
      assert.equal(await readTagging(s3, { bucket, key: 'x', versionId: undefined, tagCount: undefined }), 'k=v');
      assert.equal(await readTagging(s3, { bucket, key: 'y', versionId: undefined, tagCount: undefined }), undefined);
      // Tags added after the read that reported none: read all the same, the bucket's count is not trusted.
      await stack.s3.send(new PutObjectTaggingCommand({ Bucket: bucket, Key: 'y', Tagging: { TagSet: [{ Key: 'late', Value: '1' }] } }));
      assert.equal(await readTagging(s3, { bucket, key: 'y', versionId: undefined, tagCount: undefined }), 'late=1');
      s3.destroy();
      assert.equal(proxy.count((r) => s3OperationOf(r) === 'GetObjectTagging' && r.path.includes(bucket)), 3);
    });

    test('a rekey skipped before its body is needed lets the GET go, and the next object is read as usual', async () => {
      const bucket = await freshBucket(stack.s3);
      await sealedObject(bucket, 'small-v2', 16 * KiB);
      await sealedObject(bucket, 'large-v3', 3 * MiB);
      const s3 = proxied();
      const rekeyer = rotators.rotator('rekey', s3);
      const refs = [{ bucket, key: 'small-v2' }, { bucket, key: 'large-v3' }];
      assert.deepEqual((await rekeyer.rotate(refs, noJournal)).map((o) => o.outcome), ['rotated', 'rotated']);
      // Both are under the target now: read, decrypted under KMS, and left, their bodies never taken.
      const again = await rekeyer.rotate(refs, noJournal);
      assert.deepEqual(again.map((o) => `${o.outcome}:${o.reason}`), ['skipped:already-rotated', 'skipped:already-rotated']);
      s3.destroy();
      assert.equal((await decryptObject(stack, bucket, 'large-v3')).keyId, newKey.arn);
    });

    test('an opened body is taken once, whole; one kept too long is given up for a read of its own', async () => {
      const bucket = await freshBucket(stack.s3);
      const body = randomBytes(300 * KiB);
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'o', Body: body }));
      const fresh = await openObject(stack.s3, bucket, 'o');
      assert.equal(fresh.snapshot.size, body.length);
      const stream = fresh.body.take();
      assert.ok(stream);
      assert.equal(fresh.body.take(), undefined, 'taken once');
      assert.ok((await buffer(stream)).equals(body));

      const stale = await openObject(stack.s3, bucket, 'o');
      await sleep(20);
      assert.equal(stale.body.take(10), undefined, 'older than its idle limit');

      for (const size of [10, body.length]) {
        const released = await openObject(stack.s3, bucket, 'o');
        released.body.release(size);
        assert.equal(released.body.take(), undefined, 'released');
      }
    });
  });
}
