import { PassThrough } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { KmsBatcher } from '../kms/batcher.js';
import { scanScope, type UsageFinding } from '../usage/scan.js';
import type { ReportStore } from './report-store.js';
import { scopeEntries } from './sources.js';
import { REMAINDER_KINDS, type CampaignSpec, type RemainderKind, type Verification } from './spec.js';

export interface VerifyDeps {
  readonly s3: S3Client;
  /** Paced by the campaign's rate limiter. */
  readonly kms: KmsBatcher;
  readonly reports: ReportStore;
}

/** One entry that still depends on a source key, or whose key could not be told: a row of `remaining.jsonl`. */
export interface Remainder {
  readonly kind: RemainderKind;
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  readonly keyId: string | undefined;
  readonly reason: string | undefined;
  readonly message: string | undefined;
}

export function remainderKind(f: UsageFinding): RemainderKind {
  if (f.status === 'unreadable') return 'unreadable';
  if (f.kind !== 'object') return f.kind;
  return f.isLatest ? 'object' : 'noncurrent-version';
}

/**
 * The closing verification: the campaign's scope re-scanned with the key-usage scan (the same entries
 * the planner planned, the same classification as `rekey audit`), counting what remains under the
 * campaign's source keys (its --source-key, else every key but the target) and what could not be
 * read. The rows go to the report store; the counts are returned for the campaign's state.
 */
export async function verifyCampaign(deps: VerifyDeps, spec: CampaignSpec): Promise<Verification> {
  const sourceKeys = spec.sourceKeyArns.length > 0 ? new Set(spec.sourceKeyArns) : undefined;
  const matches = (keyId: string) => (sourceKeys ? sourceKeys.has(keyId) : keyId !== spec.targetKeyArn);
  const byKind = Object.fromEntries(REMAINDER_KINDS.map((k) => [k, 0])) as Record<RemainderKind, number>;
  const byKey: Record<string, Partial<Record<RemainderKind, number>>> = {};
  // Rows stream to the store as the scan finds them: a scope with millions left is never held in memory.
  const rows = new PassThrough({ objectMode: true });
  const stored = deps.reports.putRemaining(rows);
  stored.catch(() => undefined);
  let scanned = 0;
  let kmsProbes = 0;
  try {
    for (const source of spec.sources) {
      const pages = scopeEntries(deps.s3, source, { includeVersions: spec.includeVersions === true, modifiedBefore: spec.modifiedBefore });
      const summary = await scanScope(
        { s3: deps.s3, kms: deps.kms },
        pages,
        { keyArn: spec.targetKeyArn, probeKeyId: spec.targetKeyArn, matches, includeVersions: spec.includeVersions === true, filesListed: source.kind === 'listing' },
        (f) => {
          const kind = remainderKind(f);
          const key = f.keyId ?? 'unknown';
          byKind[kind] += 1;
          const perKey = (byKey[key] ??= {});
          perKey[kind] = (perKey[kind] ?? 0) + 1;
          rows.write(JSON.stringify({ kind, bucket: f.bucket, key: f.key, versionId: f.versionId, keyId: f.keyId, reason: f.reason, message: f.message } satisfies Remainder));
        },
      );
      scanned += summary.scanned.objects + summary.scanned.noncurrentVersions + summary.scanned.instructionFiles;
      kmsProbes += summary.kmsProbes;
    }
    rows.end();
  } catch (err) {
    rows.destroy(err as Error);
    throw err;
  }
  await stored;
  const unreadable = byKind.unreadable;
  return {
    at: Date.now(),
    sourceKeys: sourceKeys ? [...sourceKeys] : 'any-but-target',
    scanned,
    remaining: REMAINDER_KINDS.reduce((sum, k) => sum + byKind[k], 0) - unreadable,
    unreadable,
    byKind,
    byKey,
    kmsProbes,
  };
}
