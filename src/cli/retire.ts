import { InvalidArgumentError, type Command } from 'commander';
import { configuredActor, openConfiguredAuditTrail } from '../trail/audit-trail.js';
import { cancelRetirement, iso, listRetirements, retireKey, RetirementRefused, scheduleDeletion, type RetireRefusal, type RetirementClock, type RetirementDeps, type StepResult } from '../retirement/retirement.js';
import { RefusalRecorder, RetirementStore, type Retirement, type RetirementScope, type RetirementStep } from '../retirement/store.js';
import { CampaignStore } from '../campaign/store.js';
import { makeKmsClient, makeRedis, makeS3Client, type RedisClient } from '../config/clients.js';
import { loadConfig, type Config } from '../config/config.js';
import { ConfigError, RekeyError } from '../errors.js';
import { PENDING_WINDOW_DAYS } from '../kms/key-lifecycle.js';
import { usageScanBatcher, describeFinding } from './audit.js';
import { duration, formatDurationFlag, positiveInt } from './options.js';
import { EXIT } from './program.js';

/**
 * Replaces the observation period's clock (Redis's) with a fixed instant, so tests can step past a
 * seven-day period. Read here only; every step taken under it says so in its proof (`clock`).
 */
const CLOCK_OVERRIDE = 'REKEY_RETIREMENT_NOW';

interface RetireFlags {
  readonly bucket?: string[];
  readonly prefix?: string[];
  readonly campaign?: string[];
  readonly includeVersions?: boolean;
  readonly probeKey?: string;
  readonly kmsRate: number;
  readonly scheduleDeletion?: boolean;
  readonly pendingDays?: number;
  readonly observe?: number;
  readonly cancel?: boolean;
  readonly reason?: string;
  readonly json?: boolean;
}

const DEFAULT_PENDING_DAYS = 30;
const DEFAULT_OBSERVE_MS = 7 * 86_400_000;

/** A function, not a table: program.ts imports this module, so EXIT is not there yet while it loads. */
function exitFor(reason: RetireRefusal): number {
  switch (reason) {
    case 'key-in-use':
      return EXIT.keyInUse;
    case 'key-use-unproven':
      return EXIT.keyUseUnproven;
    case 'aws-managed-key':
      return EXIT.usage;
    default:
      return EXIT.stateConflict;
  }
}

const EXIT_HELP = `
Steps:
  rekey retire KEY --bucket B [--prefix P] | --campaign ID      audit, then DisableKey
  rekey retire KEY --schedule-deletion --probe-key OTHER         after --observe, audit again, then ScheduleKeyDeletion
  rekey retire KEY --cancel                                      CancelKeyDeletion and EnableKey
  rekey keys                                                     keys in retirement, with the proof of each step

Exit codes:
  0  the step was taken (recorded in Redis and, with REKEY_AUDIT_LOG, in the audit trail)
  3  objects, versions or instruction files remain under the key (listed); nothing changed
  4  none found under the key, but some entries could not be read (listed); nothing changed
  5  refused: the observation period is not over, rekey did not disable the key, its state
     changed outside rekey, a campaign still uses it, or a multi-Region primary has replicas
  1  a call failed; 2  a bad flag, an unknown key, or an AWS managed key`;

function pendingDays(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < PENDING_WINDOW_DAYS.min || n > PENDING_WINDOW_DAYS.max) {
    throw new InvalidArgumentError(`--pending-days takes ${PENDING_WINDOW_DAYS.min} to ${PENDING_WINDOW_DAYS.max} (KMS's bounds), e.g. --pending-days 30`);
  }
  return n;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function scopesFrom(flags: RetireFlags): RetirementScope[] {
  if (flags.prefix?.length && !flags.bucket?.length) throw new ConfigError('--prefix narrows --bucket; add --bucket B');
  const prefixes = flags.prefix?.length ? flags.prefix : [''];
  return (flags.bucket ?? []).flatMap((bucket) => prefixes.map((prefix) => ({ bucket, prefix })));
}

/** Flags that belong to one step only fail fast with the step to use instead. */
function checkFlags(flags: RetireFlags): void {
  if (flags.cancel && flags.scheduleDeletion) throw new ConfigError('--cancel stops a deletion; leave out --schedule-deletion');
  if (flags.cancel && (flags.bucket?.length || flags.campaign?.length)) throw new ConfigError('--cancel audits nothing; leave out --bucket and --campaign');
  if (!flags.scheduleDeletion && (flags.pendingDays !== undefined || flags.observe !== undefined)) {
    throw new ConfigError('--pending-days and --observe go with --schedule-deletion');
  }
}

/**
 * A one-shot command names an unreachable Redis within seconds instead of waiting for it: a few quick
 * reconnects, then every command fails, and the failure says which Redis (host and port: the URL may
 * hold a password).
 */
async function withOneShotRedis<T>(config: Config, fn: (redis: RedisClient) => Promise<T>): Promise<T> {
  const redis = makeRedis(config, { failFast: true });
  const at = new URL(config.redisUrl);
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
  });
  try {
    return await fn(redis);
  } catch (err) {
    // rekey's own errors (an unknown key, a refusal) say what they are; the driver's say only "closed".
    if (lastError && redis.status !== 'ready' && !(err instanceof ConfigError || err instanceof RekeyError || err instanceof RetirementRefused)) {
      throw new Error(`Redis at ${at.hostname}:${at.port || 6379} is unreachable (${lastError.message}): check REDIS_URL and that Redis runs`);
    }
    throw err;
  } finally {
    if (redis.status === 'ready') await redis.quit();
    else redis.disconnect();
  }
}

export function retirementClock(store: RetirementStore, env: NodeJS.ProcessEnv = process.env): RetirementClock {
  const override = env[CLOCK_OVERRIDE];
  if (override === undefined || override === '') return { name: 'redis', now: () => store.now() };
  const at = Date.parse(override);
  if (Number.isNaN(at)) throw new ConfigError(`${CLOCK_OVERRIDE} must be an ISO-8601 instant such as 2030-01-31T12:00:00Z`);
  return { name: CLOCK_OVERRIDE, now: () => Promise.resolve(at) };
}

async function withRetirementDeps<T>(config: Config, flags: Pick<RetireFlags, 'kmsRate' | 'json'>, fn: (deps: RetirementDeps) => Promise<T>): Promise<T> {
  const kmsClient = makeKmsClient(config);
  const s3 = makeS3Client(config);
  const trail = await openConfiguredAuditTrail(config);
  try {
    return await withOneShotRedis(config, async (redis) => {
      const store = new RetirementStore(redis, config.redisPrefix);
      return fn({
        s3,
        kmsClient,
        kms: usageScanBatcher(config, kmsClient, redis, flags.kmsRate),
        store,
        campaigns: new CampaignStore(redis, config.redisPrefix),
        refusals: new RefusalRecorder(store, trail),
        trail,
        actor: await configuredActor(config),
        clock: retirementClock(store),
        onFinding: (finding) => process.stdout.write(`${flags.json ? JSON.stringify(finding) : describeFinding(finding)}\n`),
      });
    });
  } finally {
    await trail.flush();
    s3.destroy();
    kmsClient.destroy();
  }
}

function describeStep(step: RetirementStep): string {
  const who = `${step.operator.user}@${step.operator.host}`;
  const lines = [`${step.step.padEnd(18)} ${iso(step.at)} by ${who}${step.clock === 'redis' ? '' : ` (clock: ${step.clock})`}${step.reason ? `: ${step.reason}` : ''}`];
  const p = step.proof;
  if (p) {
    const scopes = p.scopes.map((s) => `s3://${s.bucket}/${s.prefix}`).join(', ');
    lines.push(`  proof            ${scopes}${p.includeVersions ? ' with noncurrent versions' : ''}${p.campaigns.length ? ` (campaigns ${p.campaigns.join(', ')})` : ''}`);
    lines.push(`                   scanned ${p.scanned.objects} objects, ${p.scanned.noncurrentVersions} noncurrent versions, ${p.scanned.instructionFiles} instruction files; ${p.remaining} under the key, ${p.unreadable} unreadable; ${p.kmsProbes} KMS probes to ${p.probeKeyArn}`);
  }
  if (step.observedMs !== undefined) lines.push(`  observed         disabled for ${(step.observedMs / 86_400_000).toFixed(1)} days`);
  if (step.deletionDate !== undefined) lines.push(`  deletion date    ${iso(step.deletionDate)} (pending window ${step.pendingDays} days)`);
  return lines.join('\n');
}

function describeResult(result: StepResult): string {
  const verb = { disabled: 'disabled', 'deletion-scheduled': 'scheduled for deletion', 'deletion-cancelled': 'deletion cancelled, enabled', enabled: 'enabled' }[result.step.step];
  return [`${result.key.arn}: ${verb}`, describeStep(result.step), ...result.warnings.map((w) => `warning: ${w}`)].join('\n');
}

function describeRetirement(r: Retirement, kmsState: string): string {
  const head = `${r.keyArn}  ${r.state} (KMS: ${kmsState})${r.aliases.length ? `  ${r.aliases.join(', ')}` : ''}`;
  const refusals = `  refusals         ${r.refusals}${r.lastRefusalAt ? ` (last ${iso(r.lastRefusalAt)})` : ''}`;
  return [head, ...r.steps.map((s) => describeStep(s).replace(/^/gm, '  ')), refusals].join('\n');
}

export function registerRetire(program: Command): void {
  program
    .command('retire <key>')
    .description('Retire a KMS key: audit the scope and disable it; after an observation period, audit again and schedule its deletion; or cancel')
    .option('--bucket <name>', 'a bucket to audit (repeatable)', collect)
    .option('--prefix <prefix>', 'only keys under this prefix, in every --bucket (repeatable)', collect)
    .option('--campaign <id>', 'audit the buckets and prefixes of this campaign (repeatable)', collect)
    .option('--include-versions', 'noncurrent versions too: always for a versioned bucket, and for deletion when the key was disabled with them')
    .option('--probe-key <key>', 'destination of the audit\'s ReEncrypt probes (default: the key); an enabled key you may ReEncryptTo, needed once the key is disabled')
    .option('--kms-rate <n>', 'KMS probes per second', positiveInt('--kms-rate'), 100)
    .option('--schedule-deletion', 'schedule the deletion of a key rekey disabled at least --observe ago, after a fresh audit')
    .option('--pending-days <days>', `KMS's pending window before the deletion, ${PENDING_WINDOW_DAYS.min} to ${PENDING_WINDOW_DAYS.max} (default ${DEFAULT_PENDING_DAYS})`, pendingDays)
    .option('--observe <duration>', `how long the key must have been disabled, e.g. 7d, 2w (default ${formatDurationFlag(DEFAULT_OBSERVE_MS)})`, duration('--observe', 3_600_000))
    .option('--cancel', 'cancel a pending deletion and enable the key again (or enable a disabled one)')
    .option('--reason <text>', 'why: kept with the step in Redis and the audit trail (a change ticket, an incident id)')
    .option('--json', 'one JSON line per entry under the key or unreadable, then {"result": …} or {"refused": …}')
    .addHelpText('after', EXIT_HELP)
    .action(async (key: string, flags: RetireFlags) => {
      checkFlags(flags);
      const config = loadConfig();
      const audited = { scopes: scopesFrom(flags), campaigns: flags.campaign ?? [], includeVersions: flags.includeVersions === true, probeKey: flags.probeKey, reason: flags.reason };
      await withRetirementDeps(config, flags, async (deps) => {
        try {
          const result = flags.cancel
            ? await cancelRetirement(deps, key, audited)
            : flags.scheduleDeletion
              ? await scheduleDeletion(deps, key, { ...audited, observeMs: flags.observe ?? DEFAULT_OBSERVE_MS, pendingDays: flags.pendingDays ?? DEFAULT_PENDING_DAYS })
              : await retireKey(deps, key, audited);
          process.stdout.write(`${flags.json ? JSON.stringify({ result }) : describeResult(result)}\n`);
        } catch (err) {
          if (!(err instanceof RetirementRefused)) throw err;
          if (flags.json) process.stdout.write(`${JSON.stringify({ refused: { reason: err.reason, message: err.message, proof: err.proof } })}\n`);
          process.stderr.write(`rekey: refused (${err.reason}): ${err.message}\n`);
          process.exitCode = exitFor(err.reason);
        }
      });
    });
}

export function registerKeys(program: Command): void {
  program
    .command('keys')
    .description('List the keys rekey retired or is retiring: state in rekey and in KMS, dates, refusals and the proof behind each step')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }) => {
      const config = loadConfig();
      const kmsClient = makeKmsClient(config);
      try {
        const rows = await withOneShotRedis(config, (redis) => listRetirements({ store: new RetirementStore(redis, config.redisPrefix), kmsClient }));
        if (flags.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else process.stdout.write(rows.length ? `${rows.map((r) => describeRetirement(r.retirement, r.kmsState)).join('\n\n')}\n` : 'no keys in retirement\n');
      } finally {
        kmsClient.destroy();
      }
    });
}
