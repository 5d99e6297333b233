import type { Command } from 'commander';
import { planCampaign } from '../campaign/planner.js';
import { makeQueue, makeVerifyQueue } from '../campaign/queue.js';
import { CampaignStore } from '../campaign/store.js';
import { makeRedis, makeS3Client } from '../config/clients.js';
import { loadConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';

export function registerPlan(program: Command): void {
  program
    .command('plan <id>')
    .description('Resume the planning of a campaign whose planner stopped (a killed rekey start): it continues from the last page it recorded, and no object is planned twice')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, flags: { json?: boolean }) => {
      const config = loadConfig();
      const redis = makeRedis(config);
      const s3 = makeS3Client(config);
      const queue = makeQueue(config, redis);
      const verifyQueue = makeVerifyQueue(config, redis);
      try {
        const store = new CampaignStore(redis, config.redisPrefix);
        if (!(await store.exists(id))) throw new ConfigError(`no campaign ${id}: run rekey status to list campaigns`);
        const already = (await store.status(id)).planComplete;
        const result = already ? 'complete' : await planCampaign({ s3, store, queue, verifyQueue }, id);
        const { planned } = await store.status(id);
        const text = already
          ? `campaign ${id} was planned already: ${planned} objects`
          : result === 'superseded'
            ? `campaign ${id}: another planner is further on and finishes the plan (${planned} objects so far)`
            : `campaign ${id} planned: ${planned} objects${result === 'cancelled' ? ' (cancelled: nothing more is planned)' : ''}`;
        process.stdout.write(flags.json ? `${JSON.stringify({ id, planned, result, resumed: !already })}\n` : `${text}\n`);
      } finally {
        await queue.close();
        await verifyQueue.close();
        await redis.quit();
        s3.destroy();
      }
    });
}
