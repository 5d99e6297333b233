import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../../src/config/config.js';
import { byId, driverEnv, type ReadResult } from './s3ec.js';

const run = promisify(execFile);

/** The Java S3 Encryption Clients of test/interop/java (see its README). */
export type JavaClient = 'sdk1' | 'sdk1-v2' | 's3ec3' | 's3ec4';
export type Carrier = 'metadata' | 'instruction-file';

/** S3EC Java 3.x and 4.x share package names: each family is its own jar and its own JVM. */
const JAR: Record<JavaClient, string> = { sdk1: 'sdk1.jar', 'sdk1-v2': 'sdk1.jar', s3ec3: 's3ec3.jar', s3ec4: 's3ec4.jar' };

export interface JavaJob {
  readonly id: string;
  readonly op: 'put' | 'get' | 'envelope' | 'reencrypt-instruction-file';
  /** Which client does the job; for `envelope`, only which jar's plain S3 client reads it. */
  readonly client: JavaClient;
  readonly bucket: string;
  readonly key: string;
  /** SDK 1.x writers: EncryptionOnly (AES/CBC) or AuthenticatedEncryption (AES/GCM). */
  readonly mode?: 'EncryptionOnly' | 'AuthenticatedEncryption';
  readonly carrier?: Carrier;
  readonly kmsKeyId?: string;
  /** A raw AES key (base64) instead of KMS: what reEncryptInstructionFile takes. */
  readonly aesKey?: string;
  readonly newAesKey?: string;
  readonly context?: Record<string, string> | undefined;
  readonly size?: number;
  readonly seed?: number;
  readonly multipart?: boolean;
}

export interface JavaResult extends ReadResult {
  readonly metadata?: Record<string, string>;
  readonly instruction?: Record<string, string> | null;
}

function driverDir(): string {
  const dir = process.env.REKEY_JAVA_DRIVER_DIR;
  if (!dir) throw new Error('REKEY_JAVA_DRIVER_DIR is not set: run the tests through npm test (scripts/stack.sh builds the driver)');
  return dir;
}

/**
 * Runs jobs with the real Java clients: one JVM per jar for all its jobs (a JVM start costs about a
 * second), the jars side by side. Resolves to every job's result by id; a job the client refuses is a
 * result with its error, not a rejection.
 */
export async function runJava(config: Config, jobs: readonly JavaJob[]): Promise<Map<string, JavaResult>> {
  const byJar = new Map<string, JavaJob[]>();
  for (const job of jobs) byJar.set(JAR[job.client], [...(byJar.get(JAR[job.client]) ?? []), job]);
  const outputs = await Promise.all(
    [...byJar].map(async ([jar, batch]) => {
      const child = run('java', ['-XX:+UseSerialGC', '-jar', join(driverDir(), jar)], { env: driverEnv(config), maxBuffer: 64 << 20 });
      child.child.stdin!.end(JSON.stringify(batch));
      return (await child).stdout;
    }),
  );
  const results = new Map<string, JavaResult>();
  for (const out of outputs) for (const [id, r] of byId(out)) results.set(id, r as JavaResult);
  const missing = jobs.filter((j) => !results.has(j.id)).map((j) => j.id);
  if (missing.length > 0) throw new Error(`the Java driver printed no result for ${missing.join(', ')}`);
  return results;
}
