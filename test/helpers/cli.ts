import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type { CampaignStatus } from '../../src/campaign/spec.js';
import type { Config } from '../../src/config/config.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** The CLI as a user runs it, in its own process, against the test's Redis prefix and endpoints. */
export function cliEnv(config: Config, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: config.redisUrl,
    REKEY_REDIS_CLUSTER: String(config.redisCluster),
    REKEY_REDIS_PREFIX: config.redisPrefix,
    AWS_ENDPOINT_URL_S3: config.s3Endpoint,
    AWS_ENDPOINT_URL_KMS: config.kmsEndpoint,
    REKEY_LOG_LEVEL: 'warn',
    ...extra,
  };
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `rekey ARGS…` from source (through tsx), with its stdout and stderr piped. */
export function spawnRekey(config: Config, args: readonly string[], extra: NodeJS.ProcessEnv = {}): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: cliEnv(config, extra), stdio: ['ignore', 'pipe', 'pipe'] });
}

/** With `killAfterMs`, a command that has not ended by then is killed: its code is then null (a hang). */
export async function rekey(config: Config, args: readonly string[], extra: NodeJS.ProcessEnv = {}, options: { killAfterMs?: number } = {}): Promise<CliResult> {
  const child = spawnRekey(config, args, extra);
  const guard = options.killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(guard);
  return { code, stdout, stderr };
}

export async function rekeyJson<T>(config: Config, args: readonly string[]): Promise<T> {
  const r = await rekey(config, args);
  if (r.code !== 0) throw new Error(`rekey ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/**
 * `rekey run ARGS --no-watch --json`, one-machine mode, to the campaign's end: it prints the planned
 * campaign, then its final status. `exitCodes` are the exits the caller expects (default 0); e.g. 1,
 * an object failed, for a caller that looks at the outcomes itself to say which objects.
 */
export async function runCampaign(config: Config, args: readonly string[], options: { exitCodes?: readonly number[] } = {}): Promise<CampaignStatus> {
  const r = await rekey(config, ['run', ...args, '--no-watch', '--json']);
  if (!(options.exitCodes ?? [0]).includes(r.code ?? -1)) throw new Error(`rekey run ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as CampaignStatus;
}

/** A `rekey worker` process; its output is kept for assertions about secrets. */
export function startWorker(config: Config, args: readonly string[] = [], extra: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => string } {
  const child = spawnRekey(config, ['worker', ...args], extra);
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return Object.assign(child, { output: () => output });
}

export async function stopWorker(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const closed = once(child, 'close');
  child.kill(signal);
  const [code] = (await closed) as [number | null];
  return code;
}
