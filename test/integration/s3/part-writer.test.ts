import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../src/config/clients.js';
import type { Config } from '../../../src/config/config.js';
import { RekeyError } from '../../../src/errors.js';
import { RetryBudget, withBudget } from '../../../src/retry/budget.js';
import { uploadReplacement, type ReplacementOptions } from '../../../src/s3/replacement-upload.js';
import { headObject } from '../../../src/s3/snapshot.js';
import { FaultProxy } from '../../helpers/kms-fault-proxy.js';
import { s3Operation, s3OperationOf } from '../../helpers/s3-ops.js';
import { recordingJournal } from '../../helpers/upload-journal.js';
import { freshBucket, openStack, strictS3, testConfig, type TestStack } from '../../helpers/stack.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const uploadPart = s3Operation('UploadPart');

/** A body pulled chunk by chunk, counting what the writer took; it fails after `failAfter` bytes, if given. */
function countedBody(content: Buffer, options: { chunk?: number; failAfter?: number; onPull?: (pulled: number) => Promise<void> } = {}) {
  const chunk = options.chunk ?? 700 * 1024;
  const state = { pulled: 0 };
  const body = new Readable({
    highWaterMark: 0,
    read() {
      void (async () => {
        await options.onPull?.(state.pulled);
        if (options.failAfter !== undefined && state.pulled >= options.failAfter) {
          this.destroy(new RekeyError('tag-mismatch', 'the old content did not authenticate'));
          return;
        }
        const piece = content.subarray(state.pulled, state.pulled + chunk);
        state.pulled += piece.length;
        this.push(piece.length > 0 ? piece : null);
      })();
    },
  });
  return { body, state };
}


/** S3's checksum of a multipart object: CRC32 of the parts' CRC32s (base64, before any `-N`). */
function compositeCrc32(content: Buffer, partBytes: number): string {
  const crcs: Buffer[] = [];
  for (let at = 0; at < content.length; at += partBytes) {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(content.subarray(at, at + partBytes)));
    crcs.push(crc);
  }
  const whole = Buffer.alloc(4);
  whole.writeUInt32BE(crc32(Buffer.concat(crcs)));
  return whole.toString('base64');
}

function fullCrc32(content: Buffer): string {
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(content));
  return crc.toString('base64');
}

/** Each endpoint behind its own fault proxy, which counts what crossed the wire. */
for (const [endpoint, overrides] of [
  ['moto', () => ({})],
  ['versitygw', strictS3],
] as const) {
  describe(`rekey's part writer on ${endpoint}`, () => {
    let stack: TestStack;
    let proxy: FaultProxy;
    let s3: S3Client;
    let bucket: string;
    let n = 0;

    before(async () => {
      const config: Partial<Config> = overrides();
      stack = openStack(config);
      bucket = await freshBucket(stack.s3);
      proxy = await FaultProxy.start({ target: testConfig(config).s3Endpoint! });
      s3 = makeS3Client(testConfig({ ...config, s3Endpoint: proxy.url }));
    });
    after(async () => {
      s3.destroy();
      await proxy.close();
      await stack.close();
    });

    async function original(size = 1000) {
      const key = `object-${++n}.bin`;
      const body = randomBytes(size);
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, Metadata: { owner: 'team-a' } }));
      return { key, body };
    }

    async function replace(key: string, body: Readable, options: ReplacementOptions, contentLength?: number) {
      const snapshot = await headObject(stack.s3, bucket, key);
      return uploadReplacement(s3, { snapshot, body, metadata: { owner: 'team-a', 'x-amz-key-v2': 'new' }, tagging: undefined, contentLength }, { partBytes: PART, ...options });
    }

    async function readBack(key: string): Promise<Buffer> {
      const out = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await out.Body!.transformToByteArray());
    }

    async function checksumOf(key: string): Promise<string | undefined> {
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: 'ENABLED' }));
      return head.ChecksumCRC32?.split('-')[0];
    }

    async function openUploads(): Promise<number> {
      const out = await stack.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      return out.Uploads?.length ?? 0;
    }

    test('a multi-part body round-trips in odd chunks, each part with its CRC32, at most queueSize parts in flight', async () => {
      const { key } = await original();
      const content = randomBytes(4 * PART + 12_345);
      const journal = recordingJournal();
      const before = proxy.requests.length;
      const written = await replace(key, countedBody(content).body, { queueSize: 2, journal });
      assert.deepEqual(await readBack(key), content);
      assert.equal(await checksumOf(key), compositeCrc32(content, PART), 'the stored checksum is that of the five parts sent');
      const requests = proxy.requests.slice(before);
      const parts = requests.filter(uploadPart);
      assert.equal(parts.length, 5);
      for (const part of parts) assert.ok(part.headers['x-amz-checksum-crc32'] ?? part.headers['x-amz-trailer'], 'every part carries a CRC32');
      assert.ok(proxy.maxInFlight <= 2, `at most two parts in flight, saw ${proxy.maxInFlight}`);
      assert.equal(journal.seen.length, 1);
      assert.equal(journal.open.size, 0, 'the journal entry is cleared once complete');
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.Metadata?.['x-amz-key-v2'], 'new');
      assert.equal(written.etag, head.ETag);
    });

    test('a body of exactly one part goes as one PutObject with its CRC32, and an empty body too', async () => {
      for (const size of [PART, 0]) {
        const { key } = await original();
        const content = randomBytes(size);
        const before = proxy.requests.length;
        const journal = recordingJournal();
        await replace(key, countedBody(content).body, { journal });
        const sent = proxy.requests.slice(before);
        assert.deepEqual(sent.map((r) => r.method), ['PUT']);
        assert.equal(sent.filter(s3Operation('PutObject')).length, 1);
        assert.equal(journal.seen.length, 0, 'no multipart upload');
        assert.deepEqual(await readBack(key), content);
        assert.equal(await checksumOf(key), fullCrc32(content));
      }
    });

    test('an announced length sizes a small body\'s buffer; a body longer than announced still goes whole, in parts', async () => {
      const announced = 1000;
      for (const [size, requests] of [[announced, ['PutObject']], [announced + 16, ['PutObject']], [2 * PART + 7, ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload']]] as const) {
        const { key } = await original();
        const content = randomBytes(size);
        const before = proxy.requests.length;
        await replace(key, countedBody(content, { chunk: 300 }).body, { queueSize: 1 }, announced);
        assert.deepEqual(proxy.requests.slice(before).map((r) => s3OperationOf(r)), requests, `${size} bytes`);
        assert.deepEqual(await readBack(key), content, `${size} bytes`);
      }
    });

    test('a body that fails after two parts aborts the upload: the original stays, no upload is left', async () => {
      const { key, body: kept } = await original(3 * MiB);
      const journal = recordingJournal();
      const { body } = countedBody(randomBytes(5 * PART), { failAfter: 2 * PART + MiB });
      await assert.rejects(replace(key, body, { queueSize: 2, journal }), (err: unknown) => err instanceof RekeyError && err.reason === 'tag-mismatch');
      assert.equal(journal.seen.length, 1, 'the upload had started');
      assert.equal(journal.open.size, 0, 'and its journal entry is cleared by the abort');
      assert.equal(await openUploads(), 0, 'ListMultipartUploads is empty');
      assert.ok(body.destroyed);
      assert.deepEqual(await readBack(key), kept);
    });

    test('a part whose connection is reset is resent from its buffer, unchanged, within the object retry budget', async () => {
      const { key } = await original();
      const content = randomBytes(4 * PART + 1);
      proxy.inject({ fault: { kind: 'reset' }, match: uploadPart, times: 2 });
      const budget = new RetryBudget();
      try {
        await withBudget(budget, () => replace(key, countedBody(content, { chunk: MiB }).body, { queueSize: 1 }));
      } finally {
        proxy.clearFaults();
      }
      assert.equal(budget.retriesUsed, 2, 'each reset cost one retry of the object budget');
      assert.deepEqual(await readBack(key), content);
      assert.equal(await checksumOf(key), compositeCrc32(content, PART));
    });

    test('while every part buffer is taken, the body is not read: a held part stops the writer', async () => {
      const { key } = await original();
      const content = randomBytes(5 * PART);
      proxy.inject({ fault: { kind: 'hold' }, match: uploadPart, times: 1 });
      const { body, state } = countedBody(content, { chunk: MiB });
      const done = replace(key, body, { queueSize: 1 });
      const held = await proxy.nextHeld(10_000);
      // One part in flight (held) and one buffer filled: nothing more can be read until the part is answered.
      await sleep(300);
      const pulled = state.pulled;
      await sleep(300);
      assert.equal(state.pulled, pulled, 'reading stopped');
      assert.ok(pulled <= 2 * PART + MiB, `read ${pulled} bytes with one part held`);
      assert.equal(proxy.held.length, 1);
      proxy.release(held, 'forward');
      await done;
      proxy.clearFaults();
      assert.deepEqual(await readBack(key), content);
      assert.equal(await checksumOf(key), compositeCrc32(content, PART));
    });

    if (endpoint === 'versitygw') {
      // moto ignores If-Match on CompleteMultipartUpload (test/helpers/stack.ts strictS3).
      test('another writer during the upload: the completion is refused and their object stays', async () => {
        const { key } = await original();
        const theirs = randomBytes(300);
        const journal = recordingJournal();
        let written = false;
        const { body } = countedBody(randomBytes(3 * PART), {
          onPull: async (pulled) => {
            if (written || pulled < 2 * PART) return;
            written = true;
            await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: theirs }));
          },
        });
        await assert.rejects(replace(key, body, { queueSize: 2, journal }), (err: unknown) => err instanceof RekeyError && err.reason === 'changed');
        assert.deepEqual(await readBack(key), theirs);
        assert.equal(await openUploads(), 0);
        assert.equal(journal.open.size, 0);
      });
    }
  });
}
