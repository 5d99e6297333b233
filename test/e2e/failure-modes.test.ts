import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import { CipherPool } from '../../src/crypto/pool.js';
import { KmsBatcher } from '../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../src/kms/rate-limiter.js';
import type { ObjectOutcome } from '../../src/rotate/outcome.js';
import { Rekeyer } from '../../src/rotate/rekey.js';
import { rotationTarget } from '../../src/rotate/target.js';
import { noJournal } from '../../src/s3/upload-journal.js';
import { rekey, spawnRekey, type CliResult } from '../helpers/cli.js';
import { freshBucket, openStackWithKeys, type TestKey, type TestStack } from '../helpers/stack.js';
import { rawObject } from '../helpers/campaign.js';
import { freePort, freePorts } from '../helpers/ports.js';
import { putSealed, seal } from '../helpers/sealed.js';

const run = promisify(execFile);

/** `rekey ARGS` that must end by itself: killed after 10 s, which the assertions then see as a hang. */
const mustEnd = (stack: TestStack, args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> => rekey(stack.config, args, env, { killAfterMs: 10_000 });

const oneLine = (r: CliResult) => r.stderr.trim().split('\n');

/**
 * Issue 12, point 7: the failures a user meets first. An unreachable service is named in one line
 * within 10 s (exit 1); a worker waits for Redis with backoff and says it is not ready; a state
 * conflict has its own exit code; stack.sh never takes another process for its own.
 */
describe('failure modes of the CLI, the worker and the stack script', () => {
  let stack: TestStack;
  let newKey: TestKey;
  let oldKey: TestKey;

  before(async () => {
    ({ stack, oldKey, newKey } = await openStackWithKeys());
  });
  after(() => stack.close());

  test('Redis unreachable: status, pause and start end at once with one line naming it, exit 1', async () => {
    const redisUrl = `redis://127.0.0.1:${await freePort()}`;
    for (const args of [['status'], ['pause', 'x'], ['start', '--bucket', 'b', '--mode', 'rewrap', '--target-key', newKey.keyId]]) {
      const r = await mustEnd(stack, args, { REDIS_URL: redisUrl });
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.deepEqual(oneLine(r), [`rekey: Redis at ${redisUrl} is unreachable (ECONNREFUSED): start it (scripts/stack.sh up for the local stack), or set REDIS_URL`]);
    }
  });

  test('KMS or S3 unreachable: start ends with one line naming the endpoint, exit 1', async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const bucket = await freshBucket(stack.s3);
    const kms = await mustEnd(stack, ['start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId], { AWS_ENDPOINT_URL_KMS: down });
    assert.equal(kms.code, 1, kms.stderr);
    assert.deepEqual(oneLine(kms), [`rekey: KMS at ${down} is unreachable (ECONNREFUSED): check AWS_ENDPOINT_URL_KMS (or AWS_ENDPOINT_URL), AWS_REGION and the network`]);
    const s3 = await mustEnd(stack, ['start', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId], { AWS_ENDPOINT_URL_S3: down });
    assert.equal(s3.code, 1, s3.stderr);
    assert.deepEqual(oneLine(s3), [`rekey: S3 at ${down} is unreachable (ECONNREFUSED): check AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_REGION and the network`]);
  });

  test('pause or resume of a finished campaign exits 5 (a state conflict), not 2', async () => {
    const bucket = await freshBucket(stack.s3);
    const done = await rekey(stack.config, ['run', '--bucket', bucket, '--mode', 'rewrap', '--target-key', newKey.keyId, '--json', '--no-watch']);
    assert.equal(done.code, 0, done.stderr);
    const { id } = JSON.parse(done.stdout.trim().split('\n').at(-1)!) as CampaignStatus;
    for (const verb of ['pause', 'resume', 'cancel']) {
      const r = await rekey(stack.config, [verb, id]);
      assert.equal(r.code, 5, `${verb}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`campaign ${id} is done; ${verb} works on`));
    }
  });

  test('a worker without Redis backs off with one line per attempt and answers 503 on /healthz; with Redis, 200', async () => {
    const worker = spawnRekey(stack.config, ['worker', '--metrics-port', '0', '--threads', '1'], { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, REKEY_LOG_LEVEL: 'info' });
    let output = '';
    worker.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      const lines = async (msg: string, count: number) => {
        for (let i = 0; i < 200; i++) {
          const found = output.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
          if (found.length >= count) return found;
          await sleep(50);
        }
        throw new Error(`fewer than ${count} "${msg}" lines: ${output}`);
      };
      const [served] = await lines('metrics served', 1);
      const health = await fetch(`${served!.url as string}/healthz`);
      assert.equal(health.status, 503, 'not ready without Redis');
      const retries = await lines('Redis unreachable; retrying', 4);
      const delays = retries.map((l) => l.retryInMs as number);
      assert.deepEqual(delays.slice(0, 4), [...delays.slice(0, 4)].sort((a, b) => a - b), 'the waits grow');
      assert.ok(delays[3]! > delays[0]!, `backoff, not a fixed pace: ${delays.join(', ')}`);
      assert.ok(retries.every((l) => l.cause === 'ECONNREFUSED' && typeof l.redis === 'string'), 'each line names Redis and why');
      assert.doesNotMatch(output, /Unhandled error event/);
    } finally {
      worker.kill('SIGKILL');
      await once(worker, 'close');
    }

    const healthy = spawnRekey(stack.config, ['worker', '--metrics-port', '0', '--threads', '1'], { REKEY_LOG_LEVEL: 'info' });
    let out = '';
    healthy.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      let url: string | undefined;
      for (let i = 0; i < 200 && !url; i++, await sleep(50)) url = /"url":"([^"]+)"/.exec(out)?.[1];
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++, await sleep(50)) status = (await fetch(`${url!}/healthz`)).status;
      assert.equal(status, 200, 'ready once Redis is there');
    } finally {
      healthy.kill('SIGTERM');
      await once(healthy, 'close');
    }
  });

  test('stack.sh up reuses the parts it started, and names the process that holds a port it needs', async () => {
    const script = new URL('../../scripts/stack.sh', import.meta.url).pathname;
    const again = await run('bash', [script, 'up'], { env: process.env });
    assert.doesNotMatch(again.stderr, / up \(pid /, 'nothing was started again');
    assert.match(again.stdout, /export REDIS_URL=/);
    // Callers eval this output: nothing but the environment may reach it.
    for (const line of again.stdout.trim().split('\n')) assert.match(line, /^export [A-Z0-9_]+=\S*$/);

    // A second stack folder whose Redis port is taken by this test's own HTTP server.
    const squatter: Server = createServer();
    squatter.listen(0, '127.0.0.1');
    await once(squatter, 'listening');
    const port = (squatter.address() as AddressInfo).port;
    const dir = await mkdtemp(join(tmpdir(), 'rekey-stack-'));
    try {
      const ours = process.env.REKEY_STACK_DIR ?? new URL('../../.stack', import.meta.url).pathname;
      await symlink(join(ours, 'bin'), join(dir, 'bin'));
      await symlink(join(ours, 'venv'), join(dir, 'venv'));
      // This folder has no Java driver, so `up` builds one first. The stand-in for Maven fails offline and
      // then writes colour codes to stdout, as Maven 3.9 does with -q when it has to download.
      const fakeBin = join(dir, 'fake-bin');
      await mkdir(fakeBin);
      await writeFile(join(fakeBin, 'mvn'), '#!/bin/sh\ncase " $* " in *" -o "*) exit 1 ;; esac\nprintf "\\033[0m\\033[0m\\n"\n', { mode: 0o755 });
      const env = { ...process.env, PATH: `${fakeBin}:${process.env.PATH}`, REKEY_STACK_DIR: dir, REKEY_REDIS_PORT: String(port) };
      const taken = await run('bash', [script, 'up'], { env }).then(
        () => assert.fail('up must refuse a port it does not own'),
        (err: { code: number; stdout: string; stderr: string }) => err,
      );
      assert.equal(taken.code, 1);
      assert.equal(taken.stdout, '', 'what the installers print goes to stderr, never into the evaluated environment');
      // The holder is named as the OS names it: `node`, or `MainThread` for Node 24's main thread.
      assert.match(
        taken.stderr.trim().split('\n').at(-1)!,
        new RegExp(`^stack: error: redis: port ${port} is taken by \\S+ \\(pid ${process.pid}\\), not by this stack \\(${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/redis\\.pid\\): stop it, or set REKEY_REDIS_PORT to a free port$`),
      );
    } finally {
      squatter.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('stack.sh up starts a whole stack inside the command substitution its callers eval, and returns with the environment only', async () => {
    const script = new URL('../../scripts/stack.sh', import.meta.url).pathname;
    const ours = process.env.REKEY_STACK_DIR ?? new URL('../../.stack', import.meta.url).pathname;
    const dir = await mkdtemp(join(tmpdir(), 'rekey-stack-'));
    for (const part of ['bin', 'venv', 'java']) await symlink(join(ours, part), join(dir, part));
    const [redis, moto, prometheus, versitygw, localKms, ...cluster] = await freePorts(8);
    const env = {
      ...process.env,
      REKEY_STACK_DIR: dir,
      REKEY_REDIS_PORT: String(redis),
      REKEY_MOTO_PORT: String(moto),
      REKEY_PROMETHEUS_PORT: String(prometheus),
      REKEY_VERSITYGW_PORT: String(versitygw),
      REKEY_LOCAL_KMS_PORT: String(localKms),
      REKEY_REDIS_CLUSTER_PORTS: cluster.join(','),
    };
    try {
      // As scripts/test.sh does: the servers started must not hold the substitution's pipe open.
      const { stdout } = await run('bash', ['-c', `eval "$(bash '${script}' up)"; echo "redis=$REDIS_URL"`], { env, timeout: 120_000 });
      assert.equal(stdout, `redis=redis://127.0.0.1:${redis}\n`);
    } finally {
      await run('bash', [script, 'down'], { env, timeout: 60_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('cancel: a batch in flight stops at the next object boundary; the objects not started stay as they were', async () => {
    const bucket = await freshBucket(stack.s3);
    const keys = ['a', 'b', 'c', 'd', 'e'];
    for (const key of keys) await putSealed(stack.s3, bucket, key, await seal(stack.kms, randomBytes(1000), { kmsKeyId: oldKey.keyId, format: 'v2' }));
    const before = await Promise.all(keys.map((key) => rawObject(stack.s3, bucket, key)));
    const pool = new CipherPool({ threads: 1 });
    let cancelled = false;
    try {
      const kms = new KmsBatcher({ kms: stack.kms, limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'cancel', ratePerSecond: 100 }) });
      const target = rotationTarget({ mode: 'rekey', targetKey: newKey.keyId, targetKeyArn: newKey.arn, targetFormat: 'same', sourceKeyArns: [] });
      const rekeyer = new Rekeyer({ s3: stack.s3, kms, pool, objectConcurrency: 1, stopped: async () => cancelled }, target);
      const seen: ObjectOutcome[] = [];
      // `rekey cancel` lands while the second object is under way.
      const outcomes = await rekeyer.rotate(keys.map((key) => ({ bucket, key })), noJournal, async (o) => {
        seen.push(o);
        if (seen.length === 1) cancelled = true;
      });
      assert.deepEqual(outcomes.map((o) => (o.reason ? `${o.outcome}:${o.reason}` : o.outcome)), ['rotated', 'skipped:cancelled', 'skipped:cancelled', 'skipped:cancelled', 'skipped:cancelled']);
      for (const [i, key] of keys.entries()) if (i > 0) assert.deepEqual(await rawObject(stack.s3, bucket, key), before[i], `${key} was never started`);
    } finally {
      await pool.close();
    }
  });
});

