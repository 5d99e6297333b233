import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { buildProgram } from '../../src/cli/program.js';
import { Cluster } from 'ioredis';
import { makeRedis } from '../../src/config/clients.js';
import { loadConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';

const base = { AWS_REGION: 'eu-west-1', REDIS_URL: 'redis://127.0.0.1:6379' };

test('the AWS SDK variables and REDIS_URL make the configuration', () => {
  const c = loadConfig({ ...base, AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:2' });
  assert.equal(c.region, 'eu-west-1');
  assert.equal(c.s3Endpoint, 'http://127.0.0.1:1');
  assert.equal(c.kmsEndpoint, 'http://127.0.0.1:2');
  assert.equal(c.s3ForcePathStyle, true, 'a custom endpoint is an emulator: path-style');
  assert.equal(c.redisPrefix, 'rekey');
  assert.equal(loadConfig(base).s3ForcePathStyle, false, 'AWS itself: virtual-hosted style');
});

test('every missing or bad setting is named, with what to do', () => {
  assert.throws(
    () => loadConfig({ REDIS_URL: 'http://x', REKEY_LOG_LEVEL: 'loud', AWS_ENDPOINT_URL_S3: 'not a url' }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /AWS_REGION is not set: export AWS_REGION=/);
      assert.match(err.message, /REDIS_URL must start with redis:\/\//);
      assert.match(err.message, /REKEY_LOG_LEVEL must be one of/);
      assert.match(err.message, /AWS_ENDPOINT_URL_S3 must be a URL/);
      return true;
    },
  );
});

test('REKEY_REDIS_CLUSTER takes REDIS_URL as a node to discover the cluster from, which has no database number', () => {
  assert.equal(loadConfig(base).redisCluster, false);
  const c = loadConfig({ ...base, REDIS_URL: 'rediss://user:pw@clustercfg.example:6379', REKEY_REDIS_CLUSTER: 'true' });
  assert.equal(c.redisCluster, true);
  assert.equal(c.redisUrl, 'rediss://user:pw@clustercfg.example:6379');
  assert.equal(loadConfig({ ...base, REDIS_URL: 'redis://h:1/0', REKEY_REDIS_CLUSTER: '1' }).redisCluster, true);
  assert.throws(() => loadConfig({ ...base, REDIS_URL: 'redis://h:1/3', REKEY_REDIS_CLUSTER: 'true' }), /REDIS_URL names a database, which Redis Cluster does not have/);
  assert.throws(() => loadConfig({ ...base, REKEY_REDIS_CLUSTER: 'yes' }), /REKEY_REDIS_CLUSTER must be true or false/);
});

test('a rediss:// cluster URL connects every node with TLS and the credentials of the URL', () => {
  const cluster = makeRedis(loadConfig({ ...base, REDIS_URL: 'rediss://app:p%40ss@clustercfg.example:6380', REKEY_REDIS_CLUSTER: 'true' }), { failFast: true });
  try {
    assert.ok(cluster instanceof Cluster);
    const { tls, username, password } = cluster.options.redisOptions ?? {};
    assert.deepEqual({ tls, username, password }, { tls: {}, username: 'app', password: 'p@ss' });
    assert.equal(typeof cluster.options.dnsLookup, 'function', 'nodes are connected by the names their certificates carry');
  } finally {
    cluster.disconnect();
  }
});

function cli(args: string[], env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env, encoding: 'utf8' });
}

test('the CLI exits 2 with a message on a bad flag or a missing setting', () => {
  const badFlag = cli(['doctor', '--no-such-flag'], { ...process.env });
  assert.equal(badFlag.status, 2);
  assert.match(badFlag.stderr, /unknown option '--no-such-flag'/);

  const { AWS_REGION: _r, REDIS_URL: _u, ...rest } = process.env;
  const missing = cli(['doctor'], rest);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /rekey: AWS_REGION is not set/);
});

test('every command has --help', () => {
  const help = cli(['--help'], process.env);
  assert.equal(help.status, 0);
  // Each command's help is read in-process: the same commander output, without a process per command.
  const commands = buildProgram().commands;
  assert.ok(commands.length > 0);
  for (const command of commands) {
    assert.match(help.stdout, new RegExp(`^  ${command.name()}\\b`, 'm'), `rekey --help lists ${command.name()}`);
    assert.match(command.helpInformation(), new RegExp(`Usage: rekey ${command.name()}`));
  }
});
