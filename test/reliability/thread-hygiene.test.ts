import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BroadcastChannel } from 'node:worker_threads';
import { DataKey } from '../../src/crypto/data-key.js';
import { CipherPool } from '../../src/crypto/pool.js';
import { GCM } from '../../src/formats/envelope.js';
import { KmsBatcher } from '../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../src/kms/rate-limiter.js';
import { readEncryptedObject } from '../../src/rotate/read-envelope.js';
import { Rekeyer } from '../../src/rotate/rekey.js';
import { rotationTarget } from '../../src/rotate/target.js';
import { noJournal } from '../../src/s3/upload-journal.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../helpers/stack.js';
import { SPY_CHANNEL, type OpenSeen } from './support/spy-report.js';
import { putSealed, seal } from './support/sealed.js';

/** A recognisable run of bytes planted in Node's shared Buffer pool, standing in for a secret there. */
const MARKER = Buffer.from('5ec7e75ec7e75ec7e75ec7e75ec7e7aa', 'hex');
const plantMarker = (): Buffer => Buffer.from(MARKER);

/**
 * Issue 12, point 4: a `Buffer.from` view into Node's 8 KiB pool, posted to a cipher thread, would
 * take the whole slab along. A spy thread (the real cipher thread plus a report of what it received)
 * shows that each IV, message id and commitment arrives alone, and that a marker planted in the pool
 * never does.
 */
describe('cipher threads receive no byte of Node’s shared Buffer pool', () => {
  let stack: TestStack;
  let oldKey: TestKey;
  let newKey: TestKey;
  let pool: CipherPool;
  let channel: BroadcastChannel;
  const seen: OpenSeen[] = [];

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
    pool = new CipherPool({ threads: 1, threadEntry: new URL('./support/spy-thread.ts', import.meta.url) });
    channel = new BroadcastChannel(SPY_CHANNEL);
    channel.onmessage = (event) => seen.push((event as { data: OpenSeen }).data);
  });
  after(async () => {
    channel.close();
    await pool.close();
    await stack.close();
  });

  const reportsFor = async (count: number): Promise<OpenSeen[]> => {
    for (let i = 0; i < 100 && seen.length < count; i++) await new Promise((r) => setTimeout(r, 20));
    return seen.splice(0);
  };

  const assertClean = (reports: readonly OpenSeen[]) => {
    assert.ok(reports.length > 0, 'the spy thread reported the streams it opened');
    for (const report of reports) {
      for (const field of report.fields) {
        assert.equal(field.arrived.length / 2, field.length, `${field.name} arrived in a buffer of its own length`);
        assert.ok(!field.arrived.includes(MARKER.toString('hex')), `the marker arrived with ${field.name}`);
      }
      for (const bytes of report.keyBytes) assert.equal(bytes, 32, 'a key arrives in a buffer of its own');
    }
  };

  test('an IV that is a view into the pool slab holding the marker reaches the thread alone', async () => {
    const marker = plantMarker();
    const iv = Buffer.from(randomBytes(12));
    /* The premise: both are views into one pooled slab, so a plain postMessage would carry the marker. */
    assert.equal(iv.buffer, marker.buffer, 'Node placed the IV in the marker’s slab');
    assert.ok(iv.buffer.byteLength > iv.length);
    const cipher = pool.encrypt(Readable.from([Buffer.from('hello')]), { cipher: GCM, key: DataKey.generate(), iv });
    for await (const chunk of cipher) void chunk;
    assertClean(await reportsFor(1));
  });

  test('a rekey of V2 and V3 objects from S3, with the marker planted all along, sends no slab to a thread', async () => {
    const bucket = await freshBucket(stack.s3);
    const refs = [];
    for (const format of ['v2', 'v3'] as const) {
      const key = `hygiene-${format}`;
      await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(3000), { kmsKeyId: oldKey.keyId, format, context: { t: 'x' } }));
      refs.push({ bucket, key });
    }
    const { envelope } = await readEncryptedObject(stack.s3, refs[1]!);
    assert.ok(envelope.version === 'v3');
    for (const field of [envelope.messageId, envelope.keyCommitment, envelope.encryptedDataKey]) {
      assert.equal(field.buffer.byteLength, field.byteLength, 'a decoded field owns its memory');
    }
    const planting = setInterval(plantMarker, 1);
    try {
      const kms = new KmsBatcher({
        kms: stack.kms,
        limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'hygiene', ratePerSecond: 100 }),
      });
      const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
      const outcomes = await new Rekeyer({ s3: stack.s3, kms, pool }, target).rotate(refs, noJournal);
      assert.deepEqual(outcomes.map((o) => o.outcome), ['rotated', 'rotated'], outcomes.map((o) => o.message).join('; '));
    } finally {
      clearInterval(planting);
    }
    const reports = await reportsFor(2);
    assert.equal(reports.length, 2, 'one open per object');
    assertClean(reports);
  });
});
