import { randomUUID } from 'node:crypto';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { Command } from 'commander';
import { scanKeyUsage, type UsageFinding, type UsageSummary } from '../usage/scan.js';
import { openConfiguredAuditTrail } from '../trail/audit-trail.js';
import { RefusalRecorder, RetirementStore } from '../retirement/store.js';
import { makeKmsClient, makeRedis, makeS3Client, type RedisClient } from '../config/clients.js';
import { loadConfig, type Config } from '../config/config.js';
import { KmsBatcher } from '../kms/batcher.js';
import { RedisRateLimiter } from '../kms/rate-limiter.js';
import { resolveKeyArn } from '../kms/resolve-key.js';
import { positiveInt } from './options.js';
import { EXIT } from './program.js';

interface AuditFlags {
  readonly bucket: string;
  readonly prefix?: string;
  readonly key: string;
  readonly probeKey?: string;
  readonly includeVersions?: boolean;
  readonly kmsRate: number;
  readonly json?: boolean;
}

const EXIT_HELP = `
Exit codes:
  0  nothing under the key, and every encrypted entry was told apart: as far as this
     bucket/prefix goes, the key may be scheduled for deletion
  3  objects, versions or instruction files remain under the key (listed)
  4  none found under the key, but some entries could not be read (listed, with the
     reason), so the key's absence is not proven
  1  the audit itself failed; 2  a bad flag or setting

How the key is learnt: KMS ReEncrypt of each distinct wrapped data key, with its stored
encryption context, to --probe-key (default --key); the response names the source key and
its ciphertext is dropped. No plaintext data key is ever held. Needs kms:ReEncryptFrom on
the keys in use and kms:ReEncryptTo on the probe key.`;

/** One entry under the key, or unreadable, as a line of text. */
export function describeFinding(f: UsageFinding): string {
  const where = `s3://${f.bucket}/${f.key}${f.versionId && !f.isLatest ? `?versionId=${f.versionId}` : ''}`;
  const what = f.status === 'under-key' ? `${f.format} ${f.kind}${f.isLatest ? '' : ', noncurrent'}` : `${f.reason}: ${f.message}`;
  return `${f.status.padEnd(10)} ${where} (${what})`;
}

function describeSummary(s: UsageSummary): string {
  const counts = (r: Record<string, number>) => Object.entries(r).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  return [
    `audit of s3://${s.bucket}/${s.prefix} for ${s.keyArn}${s.includeVersions ? ', with noncurrent versions' : ''}`,
    `  scanned          ${s.scanned.objects} objects, ${s.scanned.noncurrentVersions} noncurrent versions, ${s.scanned.instructionFiles} instruction files`,
    `  under the key    ${s.underKey.total} (${s.underKey.noncurrent} noncurrent); by format: ${counts(s.underKey.byFormat)}; by carrier: ${counts(s.underKey.byKind)}`,
    `  other KMS keys   ${s.otherKeys}; raw-key wraps ${s.notKms}; key in an instruction file ${s.keyInInstructionFile}`,
    `  not encrypted    ${s.notEncrypted}`,
    `  unreadable       ${s.unreadable.total}${s.unreadable.total ? ` (${counts(s.unreadable.byReason)})` : ''}`,
    `  KMS probes       ${s.kmsProbes}`,
  ].join('\n');
}

/** The KMS client behind an audit's probes, paced by a rate limit of its own. */
export function usageScanBatcher(config: Config, kms: KMSClient, redis: RedisClient, ratePerSecond: number): KmsBatcher {
  return new KmsBatcher({ kms, limiter: new RedisRateLimiter({ redis, prefix: config.redisPrefix, campaign: `audit-${randomUUID().slice(0, 8)}`, ratePerSecond }) });
}

export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description('List every object, version and instruction file still wrapped under a KMS key, to know when the key can be scheduled for deletion')
    .requiredOption('--bucket <name>', 'the bucket to audit')
    .option('--prefix <prefix>', 'only keys under this prefix')
    .requiredOption('--key <key>', 'the KMS key asked about (key id, alias or ARN)')
    .option('--include-versions', 'noncurrent versions too, and old versions of instruction files')
    .option('--probe-key <key>', 'destination of the ReEncrypt probes (default: --key); an enabled key you may ReEncryptTo, when --key is disabled or refuses it')
    .option('--kms-rate <n>', 'KMS probes per second', positiveInt('--kms-rate'), 100)
    .option('--json', 'one JSON line per entry under the key or unreadable, then {"summary": …}')
    .addHelpText('after', EXIT_HELP)
    .action(async (flags: AuditFlags) => {
      const config = loadConfig();
      const kms = makeKmsClient(config);
      const s3 = makeS3Client(config);
      const redis = makeRedis(config);
      const trail = await openConfiguredAuditTrail(config);
      const refused: UsageFinding[] = [];
      try {
        const keyArn = await resolveKeyArn(kms, flags.key, 'audited key', { usable: false });
        const probeKeyArn = await resolveKeyArn(kms, flags.probeKey ?? flags.key, flags.probeKey ? 'probe key' : 'probe key (--key, unless --probe-key names another)', { usable: true });
        const summary = await scanKeyUsage(
          { s3, kms: usageScanBatcher(config, kms, redis, flags.kmsRate) },
          { bucket: flags.bucket, prefix: flags.prefix ?? '', keyArn, probeKeyId: probeKeyArn, includeVersions: flags.includeVersions === true },
          (finding) => {
            if (finding.reason === 'kms-disabled') refused.push(finding);
            process.stdout.write(`${flags.json ? JSON.stringify(finding) : describeFinding(finding)}\n`);
          },
        );
        await new RefusalRecorder(new RetirementStore(redis, config.redisPrefix), trail).noteFindings(refused, 'audit');
        process.stdout.write(`${flags.json ? JSON.stringify({ summary }) : describeSummary(summary)}\n`);
        if (summary.underKey.total > 0) process.exitCode = EXIT.keyInUse;
        else if (summary.unreadable.total > 0) process.exitCode = EXIT.keyUseUnproven;
      } finally {
        await trail.flush();
        await redis.quit();
        s3.destroy();
        kms.destroy();
      }
    });
}
