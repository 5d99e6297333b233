import { createHash, randomBytes } from 'node:crypto';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { generateSharedKey, putSeedObject, type SharedDataKey } from './s3ec-writer.js';

export interface SeedPlan {
  readonly bucket: string;
  readonly prefix?: string;
  readonly count: number;
  readonly kmsKeyId: string;
  /** Object sizes, used in turn. */
  readonly sizes?: readonly number[];
  /** Objects per data key: above 1, writers with data-key caching are imitated. */
  readonly objectsPerDataKey?: number;
  /** Every n-th object keeps its envelope in an instruction file. */
  readonly instructionFileEvery?: number;
  readonly context?: Record<string, string>;
  readonly concurrency?: number;
}

export interface SeededObject {
  readonly key: string;
  readonly format: 'v2' | 'v3';
  readonly size: number;
  readonly sha256: string;
  readonly instructionFile: boolean;
}

/** Seeds a bucket with S3EC objects under `kmsKeyId`, alternating V2 and V3. */
export async function seedObjects(s3: S3Client, kms: KMSClient, plan: SeedPlan): Promise<SeededObject[]> {
  const sizes = plan.sizes ?? [1024];
  const perKey = plan.objectsPerDataKey ?? 1;
  const keys = new Map<string, Promise<SharedDataKey>>();
  const limit = pLimit(plan.concurrency ?? 16);
  const seeded = await Promise.all(
    Array.from({ length: plan.count }, (_, i) =>
      limit(async () => {
        const format = i % 2 === 0 ? 'v2' : 'v3';
        const group = `${format}:${Math.floor(i / (2 * perKey))}`;
        if (!keys.has(group)) keys.set(group, generateSharedKey(kms, plan.kmsKeyId, format, plan.context));
        const size = sizes[i % sizes.length]!;
        const body = randomBytes(size);
        const key = `${plan.prefix ?? ''}${String(i).padStart(6, '0')}`;
        const instructionFile = plan.instructionFileEvery !== undefined && i % plan.instructionFileEvery === 0;
        await putSeedObject(
          s3,
          { bucket: plan.bucket, key, format, instructionFile, metadata: { seeded: 'rekey' }, contentType: 'application/octet-stream', ...(plan.context ? { context: plan.context } : {}) },
          body,
          await keys.get(group)!,
        );
        return { key, format, size, sha256: createHash('sha256').update(body).digest('hex'), instructionFile } as const;
      }),
    ),
  );
  for (const k of keys.values()) (await k).plaintext.fill(0);
  return seeded;
}
