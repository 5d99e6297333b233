import { z } from 'zod';
import { ConfigError } from '../errors.js';

/**
 * The settings every command shares, from the environment by the AWS SDK's conventions plus
 * `REDIS_URL`. Command flags are validated where the command is defined; both end in a ConfigError
 * that tells the user what to set.
 */
export interface Config {
  readonly region: string;
  readonly s3Endpoint: string | undefined;
  readonly kmsEndpoint: string | undefined;
  /** Emulators (moto, MinIO) need path-style addressing; AWS does not. */
  readonly s3ForcePathStyle: boolean;
  readonly redisUrl: string;
  /**
   * Redis Cluster (ElastiCache/MemoryDB cluster mode): `redisUrl` is then one node to discover the
   * cluster from, e.g. the configuration endpoint.
   */
  readonly redisCluster: boolean;
  /** Every Redis key rekey writes starts with this, so several deployments can share one Redis. */
  readonly redisPrefix: string;
  readonly logLevel: LogLevel;
  /** Where the audit trail goes (JSON lines, appended); `-` for stderr; none when unset. */
  readonly auditLog: string | undefined;
  /** The default `--report-to` of campaigns: `s3://bucket/prefix/` or a folder. */
  readonly reportTo: string | undefined;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const url = (name: string, hint: string) =>
  z.url({ error: `${name} must be a URL, e.g. ${hint}` });

const booleanFlag = (name: string) =>
  z.enum(['true', 'false', '1', '0'], { error: `${name} must be true or false` }).transform((v) => v === 'true' || v === '1');

const envSchema = z.object({
  AWS_REGION: z.string({ error: 'AWS_REGION is not set: export AWS_REGION=us-east-1 (or your region)' }).min(1),
  AWS_ENDPOINT_URL: url('AWS_ENDPOINT_URL', 'http://127.0.0.1:5055').optional(),
  AWS_ENDPOINT_URL_S3: url('AWS_ENDPOINT_URL_S3', 'http://127.0.0.1:5055').optional(),
  AWS_ENDPOINT_URL_KMS: url('AWS_ENDPOINT_URL_KMS', 'http://127.0.0.1:5055').optional(),
  REKEY_S3_FORCE_PATH_STYLE: booleanFlag('REKEY_S3_FORCE_PATH_STYLE').optional(),
  REDIS_URL: z
    .string({ error: 'REDIS_URL is not set: export REDIS_URL=redis://127.0.0.1:6379' })
    .regex(/^rediss?:\/\//, { error: 'REDIS_URL must start with redis:// or rediss://, e.g. redis://127.0.0.1:6379' }),
  REKEY_REDIS_CLUSTER: booleanFlag('REKEY_REDIS_CLUSTER').default(false),
  REKEY_REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'REKEY_REDIS_PREFIX may hold letters, digits, _ . - (at most 64)' })
    .default('rekey'),
  REKEY_LOG_LEVEL: z.enum(LOG_LEVELS, { error: `REKEY_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  REKEY_AUDIT_LOG: z.string().optional(),
  REKEY_REPORT_TO: z.string().optional(),
});

/** Reads and validates the shared settings; throws a ConfigError listing every problem at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => issue.message).join('\n'));
  }
  const e = parsed.data;
  /* Precondition: a Redis Cluster has only database 0. */
  if (e.REKEY_REDIS_CLUSTER && !['', '/', '/0'].includes(URL.parse(e.REDIS_URL)?.pathname ?? '')) {
    throw new ConfigError('REDIS_URL names a database, which Redis Cluster does not have: drop the /N from it, e.g. rediss://clustercfg.example.cache.amazonaws.com:6379');
  }
  const s3Endpoint = e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL;
  return {
    region: e.AWS_REGION,
    s3Endpoint,
    kmsEndpoint: e.AWS_ENDPOINT_URL_KMS ?? e.AWS_ENDPOINT_URL,
    s3ForcePathStyle: e.REKEY_S3_FORCE_PATH_STYLE ?? s3Endpoint !== undefined,
    redisUrl: e.REDIS_URL,
    redisCluster: e.REKEY_REDIS_CLUSTER,
    redisPrefix: e.REKEY_REDIS_PREFIX,
    logLevel: e.REKEY_LOG_LEVEL,
    auditLog: e.REKEY_AUDIT_LOG,
    reportTo: e.REKEY_REPORT_TO,
  };
}

/** Where Redis is, as it may be printed: the URL without user name and password. */
export function redisEndpoint(config: Pick<Config, 'redisUrl'>): string {
  try {
    const url = new URL(config.redisUrl);
    url.username = '';
    url.password = '';
    return url.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable REDIS_URL)';
  }
}
