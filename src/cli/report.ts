import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { REPORT_FORMATS, reportLines, type ReportFormat } from '../campaign/report.js';
import { openReportStore, outcomesIn, withNewlines } from '../campaign/report-store.js';
import { putPlainStream } from '../s3/report-objects.js';
import { parseS3Uri } from '../campaign/sources.js';
import { CampaignStore } from '../campaign/store.js';
import { makeRedis, makeS3Client } from '../config/clients.js';
import { loadConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';

export function registerReport(program: Command): void {
  program
    .command('report <id>')
    .description('Write one row per object of a campaign: S3 Batch Operations report columns plus mode, key ids, bytes, reason')
    .addOption(new Option('--format <format>', 'csv or jsonl').choices(REPORT_FORMATS).default('csv'))
    .option('--out <file|s3://bucket/key>', 'where to write it (default: standard output)')
    .option('--remaining', 'the closing verification\'s remaining entries instead: a JSON line each, with its kind and key')
    .action(async (id: string, flags: { format: ReportFormat; out?: string; remaining?: boolean }) => {
      const config = loadConfig();
      const redis = makeRedis(config);
      const s3 = makeS3Client(config);
      try {
        const store = new CampaignStore(redis, config.redisPrefix);
        if (!(await store.exists(id))) throw new ConfigError(`no campaign ${id}: run rekey status to list campaigns`);
        const reports = openReportStore(s3, (await store.spec(id)).reportTo, id);
        // Streamed batch file by batch file: memory stays one batch whatever the campaign's size.
        const lines = Readable.from(flags.remaining ? withNewlines(reports.remaining()) : reportLines(outcomesIn(reports), flags.format));
        if (flags.out?.startsWith('s3://')) {
          await putPlainStream(s3, parseS3Uri(flags.out), lines, flags.format === 'csv' && !flags.remaining ? 'text/csv' : 'application/x-ndjson');
        } else {
          await pipeline(lines, flags.out ? createWriteStream(flags.out) : process.stdout);
        }
      } finally {
        s3.destroy();
        await redis.quit();
      }
    });
}
