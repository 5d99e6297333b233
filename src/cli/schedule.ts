import type { Command } from 'commander';
import { createSchedule, makePlanQueue, newScheduleId, nextFiring, removeSchedule, ScheduleStore, type Schedule, type ScheduleDeps } from '../campaign/schedule.js';
import type { CampaignSpec } from '../campaign/spec.js';
import { recordInAuditTrail } from '../trail/audit-trail.js';
import { CampaignStore } from '../campaign/store.js';
import { makeRedis } from '../config/clients.js';
import { loadConfig, type Config } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { formatDurationFlag } from './options.js';

async function withSchedules<T>(config: Config, fn: (deps: ScheduleDeps & { campaigns: CampaignStore }) => Promise<T>): Promise<T> {
  const redis = makeRedis(config);
  const planQueue = makePlanQueue(config, redis);
  try {
    return await fn({ schedules: new ScheduleStore(redis, config.redisPrefix), planQueue, campaigns: new CampaignStore(redis, config.redisPrefix) });
  } finally {
    await planQueue.close();
    await redis.quit();
  }
}

/** Creates a schedule whose runs re-plan `spec`'s sources every `everyMs`; returns its id. */
export async function scheduleCampaign(config: Config, spec: CampaignSpec, timing: { everyMs: number; minAgeMs: number }): Promise<Schedule> {
  const schedule: Schedule = { id: newScheduleId(), spec, ...timing, createdAt: Date.now() };
  await withSchedules(config, (deps) => createSchedule(deps, schedule));
  return schedule;
}

export function describeSchedule(s: Schedule): string {
  return `schedule ${s.id} (${s.spec.name}): every ${formatDurationFlag(s.everyMs)}, objects last modified at least ${formatDurationFlag(s.minAgeMs)} ago, ${s.spec.mode} to ${s.spec.targetKeyArn}`;
}

export function registerSchedules(program: Command): void {
  program
    .command('schedules')
    .description('List scheduled campaigns: their timing, next run, and recent runs (each run is a campaign of its own)')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }) => {
      await withSchedules(loadConfig(), async ({ schedules, planQueue, campaigns }) => {
        const rows = [];
        for (const schedule of await schedules.list()) {
          const runs = await Promise.all(
            (await schedules.runs(schedule.id, 5)).map(async (run) => ({
              ...run,
              state: (await campaigns.exists(run.campaignId)) ? await campaigns.state(run.campaignId) : 'gone',
            })),
          );
          rows.push({ ...schedule, nextRunAt: await nextFiring(planQueue, schedule.id), runs });
        }
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(rows)}\n`);
          return;
        }
        const text = rows.map((r) =>
          [
            describeSchedule(r),
            `  next run ${r.nextRunAt === undefined ? 'none' : new Date(r.nextRunAt).toISOString()}`,
            ...r.runs.map((run) => `  run ${run.campaignId} at ${new Date(run.firedAt).toISOString()}: ${run.state}`),
          ].join('\n'),
        );
        process.stdout.write(text.length ? `${text.join('\n\n')}\n` : 'no schedules\n');
      });
    });

  program
    .command('unschedule <id>')
    .description('Remove a schedule: no more runs; runs already made stay campaigns of their own')
    .action(async (id: string) => {
      const config = loadConfig();
      await withSchedules(config, async (deps) => {
        if (!(await removeSchedule(deps, id))) throw new ConfigError(`no schedule ${id}: run rekey schedules to list them`);
        await recordInAuditTrail(config, (trail) => trail.schedule('removed', id));
        process.stdout.write(`schedule ${id}: removed\n`);
      });
    });
}
