import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { planCampaign } from '../../src/campaign/planner.js';
import { makeQueue, makeVerifyQueue, refsOf, type BatchJob } from '../../src/campaign/queue.js';
import { CampaignStore, objectId } from '../../src/campaign/store.js';
import { cliEnv, rekey } from '../helpers/cli.js';
import { freshKmsKey, openStack, type TestKey, type TestStack } from '../helpers/stack.js';

const ROWS = 300_000;

/**
 * A manifest with the rows a real one has: quoted keys, URL-encoded characters, blank lines and a
 * key with a line break inside its quotes (a line count is not a record count).
 */
async function writeManifest(path: string, rows: number): Promise<string[]> {
  const out = createWriteStream(path);
  const keys: string[] = [];
  for (let i = 0; i < rows; i++) {
    const key = i % 50_000 === 7 ? `multi\nline/${i}` : `logs/2026/${String(i % 12).padStart(2, '0')}/part ${i}.gz`;
    keys.push(key);
    const field = key.includes('\n') ? key : encodeURIComponent(key).replace(/%2F/g, '/');
    if (!out.write(`"bucket-a","${field}"\n${i % 10_000 === 3 ? '\n' : ''}`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return keys;
}

/** Every object key in the campaign's queued jobs, as many times as it is queued. */
async function queuedKeys(stack: TestStack, id: string): Promise<Map<string, number>> {
  const queue = makeQueue(stack.config, stack.redis);
  try {
    const counts = new Map<string, number>();
    for (let start = 0; ; start += 1000) {
      const jobs = await queue.getJobs(['prioritized', 'waiting'], start, start + 999);
      for (const job of jobs) {
        const data = job.data as BatchJob;
        if (data.c !== id) continue;
        for (const ref of refsOf(data)) counts.set(objectId(ref), (counts.get(objectId(ref)) ?? 0) + 1);
      }
      if (jobs.length < 1000) return counts;
    }
  } finally {
    await queue.close();
  }
}

function assertEachOnce(counts: Map<string, number>, keys: readonly string[]): void {
  assert.equal(counts.size, keys.length, 'every object is queued');
  assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], 'no object is queued twice');
  for (const key of [keys[0]!, keys[7]!, keys[keys.length - 1]!]) assert.equal(counts.get(`bucket-a/${key}`), 1, key);
}

describe('a plan interrupted mid-way resumes and plans every object exactly once', () => {
  let stack: TestStack;
  let key: TestKey;
  let dir: string;
  let manifest: string;
  let keys: string[];

  before(async () => {
    stack = openStack();
    key = await freshKmsKey(stack.kms);
    dir = await mkdtemp(join(tmpdir(), 'rekey-plan-'));
    manifest = join(dir, 'manifest.csv');
    keys = await writeManifest(manifest, ROWS);
  });
  after(async () => {
    const queue = makeQueue(stack.config, stack.redis);
    await queue.obliterate({ force: true });
    await queue.close();
    await rm(dir, { recursive: true, force: true });
    await stack.close();
  });

  test('rekey start killed mid-plan, then rekey plan <id>', async () => {
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const child = spawn(process.execPath, ['--import', 'tsx', main, 'start', '--manifest', manifest, '--mode', 'rewrap', '--target-key', key.keyId, '--json'], {
      env: cliEnv(stack.config),
      stdio: 'ignore',
    });
    let id: string | undefined;
    for (let i = 0; i < 600 && child.exitCode === null; i++) {
      id ??= (await store.list())[0];
      if (id && (await store.status(id)).planned >= 30_000) break;
      await sleep(20);
    }
    child.kill('SIGKILL');
    await once(child, 'close');
    assert.ok(id, 'the campaign was created');
    const cut = await store.status(id);
    assert.equal(cut.planComplete, false, 'the planner was killed before the end');
    assert.ok(cut.planned > 0 && cut.planned < ROWS, `planned ${cut.planned}`);

    const resumed = await rekey(stack.config, ['plan', id, '--json']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(JSON.parse(resumed.stdout), { id, planned: ROWS, result: 'complete', resumed: true });
    const status = await store.status(id);
    assert.equal(status.planComplete, true);
    assert.equal(status.state, 'running');
    assertEachOnce(await queuedKeys(stack, id), keys);

    const again = await rekey(stack.config, ['plan', id]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, new RegExp(`campaign ${id} was planned already: ${ROWS} objects`));
    assert.equal((await rekey(stack.config, ['plan', 'nope'])).code, 2);
  });

  test('two planners racing on one campaign count each page once', async () => {
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    const id = await store.create({
      name: 'race',
      mode: 'rewrap',
      targetKey: key.keyId,
      targetKeyArn: key.arn,
      sourceKeyArns: [],
      targetFormat: 'same',
      priority: 'scheduled',
      sources: [{ kind: 'manifest', uri: manifest }],
      kmsRequestsPerSecond: 100,
      batchSize: 100,
      reportTo: '/tmp/rekey-test-reports',
    });
    const queues = [makeQueue(stack.config, stack.redis), makeQueue(stack.config, stack.redis)];
    const verifyQueue = makeVerifyQueue(stack.config, stack.redis);
    try {
      const results = await Promise.all(queues.map((queue) => planCampaign({ s3: stack.s3, store, queue, verifyQueue }, id, { pageSize: 2000 })));
      assert.deepEqual([...results].sort(), ['complete', 'superseded'], 'the planner that lost a page stops and leaves the plan to the other');
    } finally {
      await Promise.all([...queues, verifyQueue].map((q) => q.close()));
    }
    assert.equal((await store.status(id)).planned, ROWS);
    assertEachOnce(await queuedKeys(stack, id), keys);
  });
});
