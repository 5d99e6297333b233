import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { DecryptCommand } from '@aws-sdk/client-kms';
import type { CampaignStore } from '../../src/campaign/store.js';
import { kmsEncryptionContext } from '../../src/formats/index.js';
import { readEncryptedObject } from '../../src/rotate/read-envelope.js';
import { rekey } from '../helpers/cli.js';
import { freshBucket, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertAllDecrypt, openCampaignSuite, startPerMode, waitForCampaign } from '../helpers/campaign.js';
import { WorkerFleet, type FleetWorker } from '../helpers/fleet.js';
import { fileHaystacks, needle, redisHaystacks, search, type Haystack, type Needle } from '../helpers/secrets.js';
import { putSealed, seal } from '../helpers/sealed.js';

const MiB = 1024 * 1024;
const SIZES = [0, 1, 100, 5000, 70_000, 17 * MiB];
const PER_MODE = 36;

interface Written {
  readonly key: string;
  readonly sha256: string;
  readonly plaintext: Buffer;
}

/** Plaintext samples: the start, the middle and the end of each object, 32 bytes each. */
function samples(objects: readonly Written[]): Needle[] {
  return objects
    .filter((o) => o.plaintext.length >= 32)
    .flatMap((o) => {
      const mid = Math.floor(o.plaintext.length / 2);
      return [0, mid, o.plaintext.length - 32].map((at) => needle(`plaintext ${o.key}@${at}`, o.plaintext.subarray(at, at + 32)));
    });
}

/**
 * docs/design.md §4.3, checked from outside: every plaintext data key of the run, learned by the
 * test itself from KMS (Decrypt of the wrapped keys before and after, never from rekey), and samples
 * of every object's plaintext are searched for in Redis, the worker logs at debug level, the reports,
 * /metrics and the temp files written during the run.
 */
describe('no secret leaves memory: Redis, logs, reports, metrics and temp files after a rewrap and a rekey campaign', () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;
  let workerTmp: string;
  const buckets = { rewrap: '', rekey: '' };
  const written = { rewrap: [] as Written[], rekey: [] as Written[] };

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite());
    workerTmp = await mkdtemp(join(tmpdir(), 'rekey-secrets-workers-'));
    for (const mode of ['rewrap', 'rekey'] as const) {
      buckets[mode] = await freshBucket(stack.s3);
      for (let i = 0; i < PER_MODE; i++) {
        // The big object only once per mode; the other sizes in turn.
        const size = i === 0 ? SIZES[SIZES.length - 1]! : SIZES[i % (SIZES.length - 1)]!;
        const plaintext = randomBytes(size);
        const sealed = await seal(stack.kms, plaintext, { kmsKeyId: oldKey.keyId, format: i % 2 ? 'v3' : 'v2', instructionFile: i % 5 === 0, context: { run: 'secrets' } });
        const key = `s/${String(i).padStart(3, '0')}`;
        await putSealed(stack.s3, buckets[mode], key, sealed);
        written[mode].push({ key, sha256: sealed.plaintextSha256, plaintext });
      }
    }
  });
  after(async () => {
    await rm(workerTmp, { recursive: true, force: true });
    await stack.close();
  });

  test('zero hits for every plaintext data key and every plaintext sample', { timeout: 10 * 60_000 }, async () => {
    const startedAt = Date.now();
    const deks = new Map<string, Needle>();
    const learnDataKeys = async (when: string) => {
      for (const mode of ['rewrap', 'rekey'] as const) {
        for (const o of written[mode]) {
          const dek = await plaintextDataKey(stack, buckets[mode], o.key);
          deks.set(dek.toString('hex'), needle(`data key of ${mode} ${o.key} (${when})`, dek));
        }
      }
    };
    await learnDataKeys('before');

    const fleet = new WorkerFleet({
      config: stack.config,
      args: ['--concurrency', '2', '--threads', '1', '--metrics-port', '0'],
      env: () => ({ REKEY_LOG_LEVEL: 'debug', TMPDIR: workerTmp, REKEY_AUDIT_LOG: join(workerTmp, 'audit.jsonl') }),
    });
    const haystacks: Haystack[] = [];
    try {
      const ids = await startPerMode(stack.config, buckets, newKey.keyId, 5);
      const workers = [fleet.start(), fleet.start()];
      // Jobs are deleted once done: Redis is read while they are queued and in flight too.
      while ((await store.status(ids.rekey)).done < PER_MODE / 3) await sleep(50);
      haystacks.push(...(await redisHaystacks(stack.redis, stack.config.redisPrefix)).map((h) => ({ ...h, source: `mid-run ${h.source}` })));
      for (const mode of ['rewrap', 'rekey'] as const) await waitForCampaign(store, ids[mode], { timeoutMs: 5 * 60_000 });
      for (const mode of ['rewrap', 'rekey'] as const) {
        assert.deepEqual([...(await assertAllDecrypt(stack, buckets[mode], written[mode])).keys()], [newKey.arn]);
      }
      await learnDataKeys('after');

      haystacks.push(...(await redisHaystacks(stack.redis, stack.config.redisPrefix)));
      for (const w of workers) haystacks.push({ source: `metrics of worker ${w.index}`, bytes: Buffer.from(await metricsOf(w)) });
      for (const id of Object.values(ids)) {
        for (const format of ['csv', 'jsonl']) {
          const report = await rekey(stack.config, ['report', id, '--format', format]);
          assert.equal(report.code, 0, report.stderr);
          haystacks.push({ source: `report ${id}.${format}`, bytes: Buffer.from(report.stdout + report.stderr) });
        }
        const status = await rekey(stack.config, ['status', id, '--json']);
        haystacks.push({ source: `status ${id}`, bytes: Buffer.from(status.stdout + status.stderr) });
      }
    } finally {
      await fleet.stopAll();
    }
    haystacks.push({ source: 'worker logs (debug)', bytes: Buffer.from(fleet.output()) });
    haystacks.push(...(await fileHaystacks(workerTmp)), ...(await fileHaystacks(tmpdir(), startedAt)));

    const needles = [...deks.values(), ...samples([...written.rewrap, ...written.rekey])];
    assert.equal(deks.size, 3 * PER_MODE, 'rewrap keeps its data keys, rekey replaces each');
    assertScannerFinds(needles[0]!);
    assert.ok(haystacks.some((h) => h.source.startsWith('redis hash') && h.bytes.length > 1000), 'the campaign state was read');
    assert.ok(haystacks.some((h) => h.source.startsWith('mid-run redis') && h.source.includes(':rotate:')), 'BullMQ keys were read mid-run');
    // rekey has no debug-level statements today; at debug, every line it can print is printed.
    assert.ok(fleet.output().includes('"msg":"worker started"'), 'the workers logged');

    const hits = search(needles, haystacks);
    assert.deepEqual(hits.slice(0, 20), [], `${hits.length} secrets found`);
    process.stdout.write(
      `# secrets-figures ${JSON.stringify({
        dataKeys: deks.size,
        plaintextSamples: needles.length - deks.size,
        formsPerNeedle: needles[0]!.forms.length,
        haystacks: countBySource(haystacks),
        logLines: fleet.output().split('\n').filter(Boolean).length,
        auditLogBytes: haystacks.find((h) => h.source.endsWith('audit.jsonl'))?.bytes.length ?? 0,
        hits: hits.length,
      })}\n`,
    );
  });
});

/** The data key of an object as KMS gives it to the test's own client. */
async function plaintextDataKey(stack: TestStack, bucket: string, key: string): Promise<Buffer> {
  const { envelope } = await readEncryptedObject(stack.s3, { bucket, key });
  const out = await stack.kms.send(new DecryptCommand({ CiphertextBlob: envelope.encryptedDataKey, EncryptionContext: kmsEncryptionContext(envelope) }));
  return Buffer.from(out.Plaintext!);
}

async function metricsOf(worker: FleetWorker): Promise<string> {
  const url = /"url":"(http:\/\/[^"]+)","msg":"metrics served"/.exec(worker.output())?.[1];
  assert.ok(url, `worker ${worker.index} announced its metrics URL`);
  return (await fetch(`${url}/metrics`)).text();
}

/** The scanner itself: a data key base64-encoded at an unaligned offset inside a longer buffer is found. */
function assertScannerFinds(n: Needle): void {
  const embedded = Buffer.concat([Buffer.from('x'), n.forms[0]!, Buffer.from('yz')]).toString('base64');
  assert.equal(search([n], [{ source: 'control', bytes: Buffer.from(`{"k":"${embedded}"}`) }]).length, 1);
  assert.equal(search([n], [{ source: 'control', bytes: Buffer.from(n.forms[0]!.toString('hex').toUpperCase()) }]).length, 1);
}

function countBySource(haystacks: readonly Haystack[]): Record<string, { count: number; bytes: number }> {
  const out: Record<string, { count: number; bytes: number }> = {};
  for (const h of haystacks) {
    const kind = h.source.split(' ').slice(0, h.source.startsWith('mid-run') ? 2 : 1).join(' ');
    out[kind] = { count: (out[kind]?.count ?? 0) + 1, bytes: (out[kind]?.bytes ?? 0) + h.bytes.length };
  }
  return out;
}
