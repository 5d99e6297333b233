import type { Command } from 'commander';
import { recordInAuditTrail } from '../trail/audit-trail.js';
import { makeQueue } from '../campaign/queue.js';
import { openReportStore } from '../campaign/report-store.js';
import { retryFailed } from '../campaign/retry.js';
import type { CampaignState } from '../campaign/spec.js';
import { CampaignStore } from '../campaign/store.js';
import { makeRedis, makeS3Client, type RedisClient } from '../config/clients.js';
import { loadConfig, type Config } from '../config/config.js';
import { ConfigError, StateConflictError } from '../errors.js';
import { describeStatus, progressOf, watchCampaign } from './status-view.js';

async function withStore<T>(config: Config, fn: (store: CampaignStore, redis: RedisClient) => Promise<T>): Promise<T> {
  const redis = makeRedis(config);
  try {
    return await fn(new CampaignStore(redis, config.redisPrefix), redis);
  } finally {
    await redis.quit();
  }
}

async function requireCampaign(store: CampaignStore, id: string): Promise<void> {
  if (!(await store.exists(id))) throw new ConfigError(`no campaign ${id}: run rekey status to list campaigns`);
}

/** The transitions a user may ask for, and the states each may start from. */
const TRANSITIONS: Record<
  'pause' | 'resume' | 'cancel',
  { from: readonly CampaignState[]; to: CampaignState; event: 'paused' | 'resumed' | 'cancelled'; help: string }
> = {
  pause: { from: ['planning', 'running'], to: 'paused', event: 'paused', help: 'Pause a campaign: workers leave its objects queued until it resumes' },
  resume: { from: ['paused'], to: 'running', event: 'resumed', help: 'Resume a paused campaign' },
  cancel: {
    from: ['planning', 'running', 'paused'],
    to: 'cancelled',
    event: 'cancelled',
    help: 'Cancel a campaign: objects not yet rotated end as skipped:cancelled; nothing is rolled back',
  },
};

export function registerControl(program: Command): void {
  program
    .command('status [id]')
    .description('Show a campaign (or list all): totals, outcomes by reason, bytes, rate, ETA')
    .option('--watch', 'follow the campaign with a live progress bar until it ends')
    .option('--json', 'print as JSON')
    .action(async (id: string | undefined, flags: { watch?: boolean; json?: boolean }) => {
      await withStore(loadConfig(), async (store) => {
        const ids = id ? [id] : await store.list();
        if (id) await requireCampaign(store, id);
        const statuses = [];
        for (const one of ids) {
          const status = flags.watch && id ? await watchCampaign(store, one, { live: !flags.json && process.stdout.isTTY === true }) : await store.status(one);
          statuses.push({ ...status, progress: progressOf(status) });
        }
        if (flags.json) process.stdout.write(`${JSON.stringify(id ? statuses[0] : statuses)}\n`);
        else process.stdout.write(statuses.length ? `${statuses.map(describeStatus).join('\n\n')}\n` : 'no campaigns\n');
      });
    });

  for (const [verb, t] of Object.entries(TRANSITIONS)) {
    program
      .command(`${verb} <id>`)
      .description(t.help)
      .action(async (id: string) => {
        const config = loadConfig();
        await withStore(config, async (store) => {
          await requireCampaign(store, id);
          if (!(await store.transition(id, t.from, t.to))) {
            throw new StateConflictError(`campaign ${id} is ${await store.state(id)}; ${verb} works on ${t.from.join(' or ')} campaigns`);
          }
          await recordInAuditTrail(config, (trail) => trail.campaign(t.event, id));
          process.stdout.write(`campaign ${id}: ${t.to}\n`);
        });
      });
  }

  program
    .command('retry <id>')
    .description('Queue the failed objects of a campaign again')
    .action(async (id: string) => {
      const config = loadConfig();
      await withStore(config, async (store, redis) => {
        await requireCampaign(store, id);
        const spec = await store.spec(id);
        const queue = makeQueue(config, redis);
        const s3 = makeS3Client(config);
        let queued: number;
        try {
          queued = await retryFailed({ store, queue, reports: openReportStore(s3, spec.reportTo, id) }, id);
        } finally {
          await queue.close();
          s3.destroy();
        }
        await recordInAuditTrail(config, (trail) => trail.campaign('retried', id));
        process.stdout.write(`campaign ${id}: ${queued} failed objects queued again\n`);
      });
    });
}
