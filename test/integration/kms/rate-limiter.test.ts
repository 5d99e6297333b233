import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeRedis } from '../../../src/config/clients.js';
import { RedisRateLimiter } from '../../../src/kms/rate-limiter.js';
import { freePort } from '../../helpers/ports.js';
import { testConfig, uniqueName } from '../../helpers/stack.js';

type Redis = ReturnType<typeof makeRedis>;

/** Runs `acquire` in `loops` parallel loops until `ms` have passed; counts those granted in time. */
async function drain(limiter: RedisRateLimiter, loops: number, deadline: number): Promise<number> {
  let granted = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (Date.now() < deadline) {
        await limiter.acquire();
        if (Date.now() <= deadline) granted += 1;
      }
    }),
  );
  return granted;
}

describe('RedisRateLimiter on the real Redis', () => {
  const config = testConfig();
  const connections: Redis[] = [];
  const connect = (): Redis => {
    const redis = makeRedis(config);
    connections.push(redis);
    return redis;
  };

  after(async () => {
    await Promise.all(connections.map((c) => c.quit()));
  });

  test('three workers on separate connections together stay within rate·t + burst', async () => {
    const rate = 50;
    const burst = 5;
    const seconds = 2;
    const campaign = uniqueName('c');
    const limiters = Array.from(
      { length: 3 },
      () => new RedisRateLimiter({ redis: connect(), prefix: config.redisPrefix, campaign, ratePerSecond: rate, burst }),
    );
    const deadline = Date.now() + seconds * 1000;

    const counts = await Promise.all(limiters.map((l) => drain(l, 8, deadline)));

    const total = counts.reduce((a, b) => a + b, 0);
    assert.ok(total <= rate * seconds + burst, `granted ${total}, bound ${rate * seconds + burst} (${counts.join(' + ')})`);
    // Far below the bound on purpose: this only shows the limiter grants, it does not time it.
    assert.ok(total >= (rate * seconds) / 2, `granted only ${total}`);
    assert.ok(counts.every((n) => n > 0), `every worker was served: ${counts.join(', ')}`);
  });

  test('campaigns do not share a budget, and the key is named after the campaign', async () => {
    const redis = connect();
    const make = (campaign: string) =>
      new RedisRateLimiter({ redis, prefix: config.redisPrefix, campaign, ratePerSecond: 4, burst: 10 });
    const a = make(uniqueName('c'));
    const b = make(uniqueName('c'));
    assert.match(a.key, new RegExp(`^${config.redisPrefix}:kms-rate:rekey-c-`));

    // Each burst of 10 is free at once; one shared budget could not grant 20 before the next token.
    const tenEach = [a, b].flatMap((limiter) => Array.from({ length: 10 }, () => limiter.acquire()));
    const bursts = Promise.all(tenEach);
    assert.equal(await Promise.race([bursts.then(() => 'granted'), sleep(200).then(() => 'waiting')]), 'granted');
    const waited = await Promise.race([a.acquire().then(() => 'granted'), sleep(100).then(() => 'waiting')]);
    assert.equal(waited, 'waiting', 'the 11th call of one campaign waits for its next token');
    assert.ok((await redis.pttl(a.key)) > 0, 'the schedule key expires by itself');
  });

  test('rejects a rate or burst that cannot work', () => {
    const redis = connect();
    const base = { redis, prefix: config.redisPrefix, campaign: 'x' };
    assert.throws(() => new RedisRateLimiter({ ...base, ratePerSecond: 0 }), RangeError);
    assert.throws(() => new RedisRateLimiter({ ...base, ratePerSecond: Number.NaN }), RangeError);
    assert.throws(() => new RedisRateLimiter({ ...base, ratePerSecond: 10, burst: 0.5 }), RangeError);
  });
});


/** A private redis-server, so restarting it cannot disturb the shared stack. */
function startRedis(port: number): ChildProcess {
  return spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
}

async function stopRedis(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null) return;
  const exited = once(server, 'exit');
  server.kill('SIGTERM');
  await exited;
}

describe('RedisRateLimiter across a Redis restart', () => {
  let port: number;
  let server: ChildProcess;
  let redis: Redis;

  before(async () => {
    port = await freePort();
    server = startRedis(port);
    redis = makeRedis(testConfig({ redisUrl: `redis://127.0.0.1:${port}` }));
    // Refused connections while the server is down are the point of this test, not a failure.
    redis.on('error', () => {});
    await redis.ping();
  });
  after(async () => {
    redis.disconnect();
    await stopRedis(server);
  });

  test('acquire waits while Redis is down, grants nothing without it, and works again after the restart', async () => {
    const limiter = new RedisRateLimiter({ redis, prefix: 'rekey', campaign: uniqueName('c'), ratePerSecond: 1000 });
    await limiter.acquire();
    assert.equal(await redis.exists(limiter.key), 1);

    await stopRedis(server);
    const pending = limiter.acquire();
    const early = await Promise.race([pending.then(() => 'granted'), sleep(300).then(() => 'waiting')]);
    assert.equal(early, 'waiting', 'no token while Redis is down');

    // The new server has an empty script cache: ioredis must send the script again.
    server = startRedis(port);
    await pending;
    await limiter.acquire();
    assert.equal(await redis.exists(limiter.key), 1);
  });
});
