import type { Command } from 'commander';
import { openConfiguredAuditTrail, recordInAuditTrail, type AuditTrail } from '../trail/audit-trail.js';
import { estimatePlan, planCampaign } from '../campaign/planner.js';
import { makeQueue, makeVerifyQueue } from '../campaign/queue.js';
import { normaliseReportLocation } from '../campaign/report-store.js';
import { ageCutoff, type CampaignSpec, type CampaignStatus } from '../campaign/spec.js';
import { CampaignStore } from '../campaign/store.js';
import { CampaignWorker } from '../worker/campaign-worker.js';
import { makeKmsClient, makeRedis, makeS3Client } from '../config/clients.js';
import { loadConfig, type Config } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { resolveKeyArn } from '../kms/resolve-key.js';
import { makeLogger } from '../log/logger.js';
import { addStartOptions, duration, formatDurationFlag, positiveInt, sourcesFrom, type StartFlags } from './options.js';
import { EXIT } from './program.js';
import { describeSchedule, scheduleCampaign } from './schedule.js';
import { describeStatus, formatBytes, formatDuration, watchCampaign } from './status-view.js';

/** Rough rates for a dry run's duration: one worker host; the benchmarks in docs/ give measured ones. */
const ESTIMATE_RATES = { bytesPerSecond: 200e6, objectsPerSecond: 200 };

/** An age filter needs each object's LastModified, which only a listing gives; a schedule re-lists. */
function checkTiming(flags: StartFlags, sources: CampaignSpec['sources']): void {
  const timed = flags.every !== undefined ? '--every' : flags.minAge !== undefined ? '--min-age' : undefined;
  if (timed && sources.some((s) => s.kind !== 'listing')) {
    throw new ConfigError(`${timed} needs --bucket: a manifest or an inventory is a fixed list without object ages`);
  }
  if (flags.every === undefined) return;
  if (flags.priority !== 'scheduled') throw new ConfigError('--every makes a scheduled campaign: leave out --priority incident');
  if (flags.dryRun) throw new ConfigError('--dry-run estimates one campaign: leave out --every');
}

/** The opt-in is about decrypting content, which only rekey does. */
function checkSourceOptIn(flags: StartFlags): void {
  if (flags.allowUnauthenticatedSource && flags.mode !== 'rekey') {
    throw new ConfigError('--allow-unauthenticated-source is for --mode rekey: rewrap never decrypts content and moves legacy CBC objects without it');
  }
}


/** Where rows go: the flag, else REKEY_REPORT_TO, else (one-machine `run` only) a folder here. */
function reportLocation(config: Config, flags: StartFlags, command: 'start' | 'run'): string {
  const wanted = flags.reportTo ?? config.reportTo ?? (command === 'run' ? 'rekey-reports' : undefined);
  /* Precondition: workers on any host write a started campaign's rows, so they need one place. */
  if (wanted === undefined) {
    throw new ConfigError('say where the campaign\'s rows go: --report-to s3://bucket/prefix/ (or REKEY_REPORT_TO); workers on every host write there');
  }
  return normaliseReportLocation(wanted);
}

async function specFrom(config: Config, flags: StartFlags, command: 'start' | 'run'): Promise<CampaignSpec> {
  const sources = sourcesFrom(flags);
  const reportTo = reportLocation(config, flags, command);
  checkTiming(flags, sources);
  checkSourceOptIn(flags);
  const kms = makeKmsClient(config);
  try {
    const targetKeyArn = await resolveKeyArn(kms, flags.targetKey, 'target key');
    const sourceKeyArns = await Promise.all((flags.sourceKey ?? []).map((k) => resolveKeyArn(kms, k, 'source key')));
    return {
      name: flags.name ?? `${flags.mode} to ${flags.targetKey}`,
      mode: flags.mode,
      targetKey: flags.targetKey,
      targetKeyArn,
      sourceKeyArns,
      targetFormat: flags.targetFormat,
      priority: flags.priority,
      sources,
      kmsRequestsPerSecond: flags.kmsRate,
      batchSize: flags.batchSize,
      reportTo,
      maxUnsettled: flags.maxUnsettled,
      ...(flags.verify === false ? { skipVerification: true } : {}),
      ...(flags.removeOrphanInstructionFiles ? { removeOrphanInstructionFiles: true } : {}),
      ...(flags.includeVersions ? { includeVersions: true } : {}),
      ...(flags.purgeReplacedVersions ? { purgeReplacedVersions: true } : {}),
      ...(flags.allowUnauthenticatedSource ? { allowUnauthenticatedSource: true } : {}),
      // A schedule sets each run's cut-off when it fires.
      ...(flags.minAge !== undefined && flags.every === undefined ? { modifiedBefore: ageCutoff(Date.now(), flags.minAge) } : {}),
    };
  } finally {
    kms.destroy();
  }
}

function print(flags: { json?: boolean }, data: unknown, text: string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(data)}\n` : `${text}\n`);
}

/** Creates and plans a campaign; with --dry-run only estimates it. Returns the campaign id. */
async function startCampaign(config: Config, flags: StartFlags, trail: AuditTrail, command: 'start' | 'run'): Promise<string | undefined> {
  const spec = await specFrom(config, flags, command);
  const s3 = makeS3Client(config);
  const redis = makeRedis(config);
  const queue = makeQueue(config, redis);
  const verifyQueue = makeVerifyQueue(config, redis);
  try {
    if (flags.dryRun) {
      const e = await estimatePlan(s3, spec, ESTIMATE_RATES);
      print(
        flags,
        { dryRun: true, ...e },
        `dry run: ${e.objects} objects, ${e.bytes === undefined ? 'size unknown' : formatBytes(e.bytes)}, ` +
          `at most ${e.kmsCalls} KMS calls, about ${formatDuration(e.seconds)} at ${spec.kmsRequestsPerSecond} KMS calls/s`,
      );
      return undefined;
    }
    const store = new CampaignStore(redis, config.redisPrefix);
    const id = await store.create(spec);
    trail.campaign('created', id, spec);
    await planCampaign({ s3, store, queue, verifyQueue }, id, { onBackpressure: () => process.stderr.write(`campaign ${id}: planning waits for workers (${spec.maxUnsettled} objects unsettled; see: rekey status ${id})\n`) });
    const status = await store.status(id);
    print(flags, { id, planned: status.planned }, `campaign ${id} planned: ${status.planned} objects (see: rekey status ${id} --watch)`);
    return id;
  } finally {
    await queue.close();
    await verifyQueue.close();
    await redis.quit();
    s3.destroy();
  }
}

/**
 * `run`'s exit code, as `audit` would answer right after: 3 when entries remain under the source
 * keys, 4 when none do but some could not be read, 1 when objects failed, 0 when verified clean.
 */
export function runExitCode(status: CampaignStatus): number {
  const v = status.verification;
  if (v && v.remaining > 0) return EXIT.keyInUse;
  if (v && v.unreadable > 0) return EXIT.keyUseUnproven;
  return status.failed > 0 ? EXIT.failed : EXIT.ok;
}

export function registerStart(program: Command): void {
  addStartOptions(program.command('start'))
    .description('Create a campaign and queue its objects for the workers (rekey worker); with --every, a schedule of campaigns')
    .option('--every <duration>', 'repeat: a schedule whose runs re-list the buckets this often (e.g. 7d), each run a campaign of its own; workers plan the runs', duration('--every', 1000))
    .action(async (flags: StartFlags) => {
      const config = loadConfig();
      if (flags.every !== undefined) {
        const schedule = await scheduleCampaign(config, await specFrom(config, flags, 'start'), { everyMs: flags.every, minAgeMs: flags.minAge ?? 0 });
        await recordInAuditTrail(config, (trail) => trail.schedule('created', schedule.id, schedule));
        const text = `${describeSchedule(schedule)}\n  the first run starts when a worker takes it; see: rekey schedules (rekey unschedule ${schedule.id} stops it)`;
        print(flags, { schedule: schedule.id, every: formatDurationFlag(schedule.everyMs), minAge: formatDurationFlag(schedule.minAgeMs) }, text);
        return;
      }
      const trail = await openConfiguredAuditTrail(config);
      await startCampaign(config, flags, trail, 'start');
      await trail.flush();
    });

  addStartOptions(program.command('run'))
    .description('Create a campaign and rotate it with workers in this process until it ends (one-machine mode)')
    .option('--concurrency <n>', 'batch jobs at once', positiveInt('--concurrency'), 4)
    .option('--threads <n>', 'cipher threads (rekey mode)', positiveInt('--threads'))
    .option('--no-watch', 'print only the final summary')
    .action(async (flags: StartFlags & { concurrency: number; threads?: number; watch: boolean }) => {
      const config = loadConfig();
      const trail = await openConfiguredAuditTrail(config);
      const worker = new CampaignWorker(
        config,
        { concurrency: flags.concurrency, trail, ...(flags.threads ? { threads: flags.threads } : {}) },
        makeLogger(config.logLevel),
      );
      const running = worker.run();
      try {
        const id = await startCampaign(config, { ...flags, json: flags.json ?? false }, trail, 'run');
        if (id === undefined) return;
        const redis = makeRedis(config);
        try {
          const final = await watchCampaign(new CampaignStore(redis, config.redisPrefix), id, { live: flags.watch && !flags.json, changed: () => worker.nextChange() });
          print(flags, final, describeStatus(final));
          process.exitCode = runExitCode(final);
        } finally {
          await redis.quit();
        }
      } finally {
        await worker.close();
        await running;
      }
    });
}
