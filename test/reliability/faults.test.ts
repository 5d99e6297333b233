import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { CampaignStore } from '../../src/campaign/store.js';
import type { SeededObject } from '../../scripts/seed/seed.js';
import { FaultProxy, kmsThrottling, seededRandom, serverError, type FaultKind, type RequestMatcher } from '../helpers/kms-fault-proxy.js';
import { strictS3, type TestKey, type TestStack } from '../helpers/stack.js';
import { assertEndsClean, openCampaignSuite, seedPerMode, startPerMode, type PerMode } from '../helpers/campaign.js';
import { WorkerFleet, type FleetWorker } from '../helpers/fleet.js';
import { s3Operation } from '../helpers/s3-ops.js';

const LONG = process.env.REKEY_LONG_TESTS === '1';
const PER_MODE = LONG ? 1000 : 150;
const MiB = 1024 * 1024;

const kmsCall: RequestMatcher = (r) => typeof r.headers['x-amz-target'] === 'string';
const anyS3: RequestMatcher = () => true;
const s3Writes = s3Operation('CopyObject', 'PutObject', 'CompleteMultipartUpload', 'UploadPart', 'DeleteObject');

/**
 * S3 (versitygw) and KMS (moto) each behind a fault proxy for the whole campaign: server errors,
 * connection resets, slow answers, writes whose answer is lost after the server acted, and
 * ThrottlingException on 10% of KMS calls. KMS throttles are the proxy's only canned answers there,
 * so the proxy's count of `respond` faults is the number of throttles a worker must have counted.
 */
describe('S3 and KMS behind fault-injecting proxies during a rewrap and a rekey campaign', () => {
  let stack: TestStack;
  let store: CampaignStore;
  let oldKey: TestKey;
  let newKey: TestKey;
  let s3Proxy: FaultProxy;
  let kmsProxy: FaultProxy;
  let buckets: PerMode<string>;
  let seeded: PerMode<SeededObject[]>;

  before(async () => {
    ({ stack, store, oldKey, newKey } = await openCampaignSuite(strictS3()));
    ({ buckets, seeded } = await seedPerMode(stack, () => ({
      count: PER_MODE, kmsKeyId: oldKey.keyId, sizes: [1, 3000, 90_000, 17 * MiB, 0, 600_000, 20, 8000, 1_000_000, 300],
      objectsPerDataKey: 3, instructionFileEvery: 7, concurrency: 8,
    })));
    s3Proxy = await FaultProxy.start({ target: stack.config.s3Endpoint!, random: seededRandom(3) });
    s3Proxy.inject({ fault: serverError(503), probability: 0.04 });
    s3Proxy.inject({ fault: serverError(500), probability: 0.02 });
    s3Proxy.inject({ fault: { kind: 'reset' }, probability: 0.02 });
    s3Proxy.inject({ fault: { kind: 'drop-response' }, match: s3Writes, probability: 0.02 });
    s3Proxy.inject({ fault: { kind: 'delay', ms: 800 }, probability: 0.04 });
    kmsProxy = await FaultProxy.start({ target: stack.config.kmsEndpoint!, random: seededRandom(5) });
    kmsProxy.inject({ fault: kmsThrottling(), probability: 0.1 });
    kmsProxy.inject({ fault: { kind: 'reset' }, probability: 0.02 });
    kmsProxy.inject({ fault: { kind: 'delay', ms: 500 }, probability: 0.03 });
  });
  after(async () => {
    await s3Proxy.close();
    await kmsProxy.close();
    await stack.close();
  });

  test('both complete, nothing is corrupt, and every throttle KMS answered is counted', { timeout: 20 * 60_000 }, async () => {
    const fleet = new WorkerFleet({
      config: stack.config,
      args: ['--concurrency', '4', '--lock-seconds', '10', '--threads', '1', '--metrics-port', '0'],
      env: () => ({ AWS_ENDPOINT_URL_S3: s3Proxy.url, AWS_ENDPOINT_URL_KMS: kmsProxy.url, REKEY_LOG_LEVEL: 'info' }),
    });
    try {
      const ids = await startPerMode(stack.config, buckets, newKey.keyId, 10);
      const workers = [fleet.start(), fleet.start()];
      for (const mode of ['rewrap', 'rekey'] as const) {
        const final = await assertEndsClean(stack, store, { mode, id: ids[mode], bucket: buckets[mode], seeded: seeded[mode], newKeyArn: newKey.arn, timeoutMs: 15 * 60_000 });
        process.stdout.write(`# fault-figures ${JSON.stringify({ mode, objects: PER_MODE, rotated: final.rotated, byReason: final.byReason })}\n`);
      }

      const injectedThrottles = kmsProxy.count(kmsCall, 'respond');
      const counted = (await Promise.all(workers.map(throttlesCounted))).reduce((a, b) => a + b, 0);
      assert.ok(injectedThrottles > 10, `the proxy throttled ${injectedThrottles} KMS calls`);
      assert.equal(counted, injectedThrottles, 'rekey_kms_throttles_total over all workers');
      const faults = (proxy: FaultProxy, match: RequestMatcher) =>
        Object.fromEntries((['respond', 'reset', 'delay', 'drop-response'] as FaultKind[]).map((k) => [k, proxy.count(match, k)]));
      process.stdout.write(
        `# fault-figures ${JSON.stringify({ s3Requests: s3Proxy.count(), s3Faults: faults(s3Proxy, anyS3), kmsRequests: kmsProxy.count(), kmsFaults: faults(kmsProxy, kmsCall), throttlesCounted: counted })}\n`,
      );
    } finally {
      await fleet.stopAll();
    }
  });
});

/** Sums a worker's rekey_kms_throttles_total from its own /metrics, found from its start-up log line. */
async function throttlesCounted(worker: FleetWorker): Promise<number> {
  let url: string | undefined;
  for (let i = 0; i < 100 && !url; i++, await sleep(100)) url = /"url":"(http:\/\/[^"]+)","msg":"metrics served"/.exec(worker.output())?.[1];
  assert.ok(url, `worker ${worker.index} announced its metrics URL`);
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^rekey_kms_throttles_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}
