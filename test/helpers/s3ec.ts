import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../../src/config/config.js';

const run = promisify(execFile);
const DRIVER = new URL('../interop/s3ec_driver.py', import.meta.url).pathname;

export interface S3ecObject {
  readonly bucket: string;
  readonly key: string;
  readonly kmsKeyId: string;
  readonly format: 'v2' | 'v3';
  readonly instructionFile?: boolean;
  readonly context?: Record<string, string>;
  readonly metadata?: Record<string, string>;
  readonly contentType?: string;
  readonly multipart?: boolean;
}

/** The environment an interop driver (Python or Java) needs to talk to the test's S3 and KMS. */
export function driverEnv(config: Config): NodeJS.ProcessEnv {
  return {
    ...process.env,
    AWS_REGION: config.region,
    AWS_ENDPOINT_URL_S3: config.s3Endpoint,
    AWS_ENDPOINT_URL_KMS: config.kmsEndpoint,
  };
}

function python(): string {
  const python = process.env.REKEY_PYTHON;
  if (!python) throw new Error('REKEY_PYTHON is not set: run the tests through npm test');
  return python;
}

/** Runs the real AWS S3 Encryption Client for Python (test/interop/s3ec_driver.py) against the stack. */
async function driver(config: Config, args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(python(), [DRIVER, ...args], { env: driverEnv(config), maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-s3ec-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes `body` with the real S3EC client; resolves to what the driver printed. */
export async function s3ecPut(config: Config, object: S3ecObject, body: Uint8Array): Promise<Record<string, unknown>> {
  return withTemp(async (dir) => {
    const file = join(dir, 'in');
    await writeFile(file, body);
    const args = ['put', '--bucket', object.bucket, '--key', object.key, '--kms-key-id', object.kmsKeyId, '--format', object.format, '--in', file];
    if (object.instructionFile) args.push('--instruction-file');
    if (object.context) args.push('--context', JSON.stringify(object.context));
    if (object.metadata) args.push('--metadata', JSON.stringify(object.metadata));
    if (object.contentType) args.push('--content-type', object.contentType);
    if (object.multipart) args.push('--multipart');
    return driver(config, args);
  });
}

export interface S3ecRead {
  readonly id: string;
  readonly bucket: string;
  readonly key: string;
  readonly kmsKeyId: string;
  readonly context?: Record<string, string> | undefined;
}

/** What the driver says of one read: the plaintext's digest, or the client's error. */
export interface ReadResult {
  readonly id: string;
  readonly ok: boolean;
  readonly sha256?: string;
  readonly bytes?: number;
  readonly error?: string;
}

/**
 * Reads many objects in one Python process (`get-many`: legacy modes on, policy allow), the way a
 * permissive reader of a mixed estate is configured; one result per read, failures included.
 */
export async function s3ecGetMany(config: Config, reads: readonly S3ecRead[]): Promise<Map<string, ReadResult>> {
  const child = run(python(), [DRIVER, 'get-many'], { env: driverEnv(config), maxBuffer: 64 << 20 });
  child.child.stdin!.end(JSON.stringify(reads));
  const { stdout } = await child;
  return byId(stdout);
}

/** JSON lines of results, keyed by their id. */
export function byId(stdout: string): Map<string, ReadResult> {
  const results = stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ReadResult);
  return new Map(results.map((r) => [r.id, r]));
}

/** Reads an object back with the real S3EC client configured with `kmsKeyId`; rejects when it cannot. */
export async function s3ecGet(
  config: Config,
  object: Pick<S3ecObject, 'bucket' | 'key' | 'context'>,
  kmsKeyId: string,
): Promise<Buffer> {
  return withTemp(async (dir) => {
    const file = join(dir, 'out');
    const args = ['get', '--bucket', object.bucket, '--key', object.key, '--kms-key-id', kmsKeyId, '--out', file];
    if (object.context) args.push('--context', JSON.stringify(object.context));
    await driver(config, args);
    return readFile(file);
  });
}
