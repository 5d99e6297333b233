import { InvalidArgumentError, Option, type Command } from 'commander';
import { PRIORITIES, type CampaignSource } from '../campaign/spec.js';
import { ConfigError } from '../errors.js';
import { MODES, TARGET_FORMATS, type Mode, type TargetFormat } from '../rotate/outcome.js';
import type { Priority } from '../campaign/spec.js';

export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
      throw new InvalidArgumentError(`${name} takes a whole number of at least 1, e.g. ${name} 4`);
    }
    return n;
  };
}

const DURATION_UNITS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `90d`, `12h`, `30s`: a whole number and one unit, in milliseconds. */
export function duration(name: string, minimumMs: number) {
  return (value: string): number => {
    const m = /^(\d+)([smhdw])$/.exec(value);
    const ms = m ? Number(m[1]) * DURATION_UNITS[m[2]!]! : Number.NaN;
    if (!Number.isSafeInteger(ms) || ms < minimumMs) {
      throw new InvalidArgumentError(`${name} takes a duration of at least ${minimumMs / 1000}s such as 30s, 12h, 90d or 2w`);
    }
    return ms;
  };
}

/** The inverse of {@link duration}: the largest unit that divides evenly. */
export function formatDurationFlag(ms: number): string {
  if (ms === 0) return '0s';
  const [unit, size] = Object.entries(DURATION_UNITS).reverse().find(([, size]) => ms % size === 0) ?? ['ms', 1];
  return `${ms / size}${unit}`;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** The flags of `start` and `run`: what to rotate, to which key, how fast. */
export interface StartFlags {
  readonly bucket?: string[];
  readonly prefix?: string[];
  readonly manifest?: string;
  readonly inventory?: string;
  readonly mode: Mode;
  readonly targetKey: string;
  readonly sourceKey?: string[];
  readonly targetFormat: TargetFormat;
  readonly name?: string;
  readonly priority: Priority;
  readonly kmsRate: number;
  readonly batchSize: number;
  readonly includeVersions?: boolean;
  readonly purgeReplacedVersions?: boolean;
  readonly allowUnauthenticatedSource?: boolean;
  /** Milliseconds: only objects last modified at least this long ago. */
  readonly minAge?: number;
  /** Milliseconds between the runs of a schedule (`start` only). */
  readonly every?: number;
  readonly dryRun?: boolean;
  readonly json?: boolean;
  /** `s3://bucket/prefix/` or a folder; REKEY_REPORT_TO, else a folder for `run`. */
  readonly reportTo?: string;
  /** commander's name for --no-verify. */
  readonly verify: boolean;
  readonly removeOrphanInstructionFiles?: boolean;
  readonly maxUnsettled: number;
}

export function addStartOptions(command: Command): Command {
  return command
    .option('--bucket <name>', 'a bucket to rotate (repeatable)', collect)
    .option('--prefix <prefix>', 'only keys under this prefix, in every --bucket (repeatable)', collect)
    .option('--manifest <file|s3://bucket/key>', 'a CSV of bucket,key[,versionId] rows (S3 Batch Operations format)')
    .option('--inventory <s3://bucket/.../manifest.json>', 'an S3 Inventory manifest (CSV inventories)')
    .addOption(new Option('--mode <mode>', 'rewrap: move the wrapped data key with KMS ReEncrypt; rekey: re-encrypt the content under a fresh data key').choices(MODES).makeOptionMandatory())
    .requiredOption('--target-key <key>', 'the KMS key to move to (key id, alias or ARN)')
    .option('--source-key <key>', 'rotate only objects under this KMS key (repeatable)', collect)
    .addOption(new Option('--target-format <format>', 'format written by rekey mode (V1 always becomes V2)').choices(TARGET_FORMATS).default('same'))
    .option('--name <name>', 'a name to find the campaign by')
    .addOption(new Option('--priority <priority>', 'incident campaigns run before scheduled ones').choices(PRIORITIES).default('scheduled'))
    .option('--kms-rate <n>', 'KMS requests per second for the whole campaign, all workers together', positiveInt('--kms-rate'), 500)
    .option('--batch-size <n>', 'objects per queue job', positiveInt('--batch-size'), 100)
    .option('--include-versions', 'noncurrent versions too: each is checked and, still under a rotated key, reported as skipped:noncurrent-version (S3 cannot rewrite one in place)')
    .option('--purge-replaced-versions', 'in a versioned bucket, delete the exact version each rotation replaced once the new version is verified (off by default)')
    .option('--allow-unauthenticated-source', 'rekey mode: also re-encrypt legacy AES/CBC content (V1 era), which has no authentication, so a wrong key or damage can pass unseen and would then carry a valid GCM tag; without it such objects end skipped:unauthenticated-source (rewrap needs no opt-in)')
    .option('--min-age <duration>', 'only objects last modified at least this long ago, e.g. 90d, even those under the target key already: LastModified stands for the age of the data key (rekey) or of its wrapping (rewrap); --bucket only', duration('--min-age', 0))
    .option('--report-to <s3://bucket/prefix/|folder>', 'where each settled batch\'s rows and the closing verification go (default: REKEY_REPORT_TO; for run, ./rekey-reports)')
    .option('--no-verify', 'skip the closing verification (a huge bucket: it costs one LIST per 1,000 keys, one HEAD per object and one KMS call per distinct wrapped key the verifying worker did not wrap itself); the campaign then proves nothing left')
    .option('--remove-orphan-instruction-files', 'delete instruction files no object reads any more, re-checked first and only if unchanged (their ETag)')
    .option('--max-unsettled <n>', 'planning pauses while this many planned objects are not settled yet (backpressure on the queue in Redis)', positiveInt('--max-unsettled'), 1_000_000)
    .option('--dry-run', 'plan nothing; print an estimate of objects, bytes, KMS calls and duration')
    .option('--json', 'print the result as JSON');
}

/** One source kind per campaign; --prefix narrows --bucket. */
export function sourcesFrom(flags: Pick<StartFlags, 'bucket' | 'prefix' | 'manifest' | 'inventory'>): CampaignSource[] {
  const kinds = [flags.bucket?.length ? '--bucket' : '', flags.manifest ? '--manifest' : '', flags.inventory ? '--inventory' : ''].filter(Boolean);
  /* Precondition: the campaign names its objects exactly one way. */
  if (kinds.length !== 1) {
    throw new ConfigError(
      kinds.length === 0
        ? 'say which objects to rotate: --bucket B [--prefix P], --manifest FILE or --inventory s3://…/manifest.json'
        : `use one of ${kinds.join(', ')}, not several`,
    );
  }
  if (flags.prefix?.length && !flags.bucket?.length) throw new ConfigError('--prefix narrows --bucket; add --bucket B');
  if (flags.manifest) return [{ kind: 'manifest', uri: flags.manifest }];
  if (flags.inventory) return [{ kind: 'inventory', uri: flags.inventory }];
  const prefixes = flags.prefix?.length ? flags.prefix : [''];
  return (flags.bucket ?? []).flatMap((bucket) => prefixes.map((prefix) => ({ kind: 'listing' as const, bucket, prefix })));
}
