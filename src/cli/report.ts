import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Upload } from '@aws-sdk/lib-storage';
import { Option, type Command } from 'commander';
import { REPORT_FORMATS, reportLines, type ReportFormat } from '../campaign/report.js';
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
    .action(async (id: string, flags: { format: ReportFormat; out?: string }) => {
      const config = loadConfig();
      const redis = makeRedis(config);
      try {
        const store = new CampaignStore(redis, config.redisPrefix);
        if (!(await store.exists(id))) throw new ConfigError(`no campaign ${id}: run rekey status to list campaigns`);
        const lines = Readable.from(reportLines(store.outcomes(id), flags.format));
        if (flags.out?.startsWith('s3://')) {
          const { bucket, key } = parseS3Uri(flags.out);
          const s3 = makeS3Client(config);
          try {
            await new Upload({ client: s3, params: { Bucket: bucket, Key: key, Body: lines, ContentType: flags.format === 'csv' ? 'text/csv' : 'application/x-ndjson' } }).done();
          } finally {
            s3.destroy();
          }
        } else {
          await pipeline(lines, flags.out ? createWriteStream(flags.out) : process.stdout);
        }
      } finally {
        await redis.quit();
      }
    });
}
