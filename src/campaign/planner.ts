import type { S3Client } from '@aws-sdk/client-s3';
import type { Queue } from 'bullmq';
import { batchesOf, enqueue, type BatchJob } from './queue.js';
import { readSource } from './sources.js';
import type { CampaignSpec } from './spec.js';
import type { CampaignStore } from './store.js';

export interface PlanDeps {
  readonly s3: S3Client;
  readonly store: CampaignStore;
  readonly queue: Queue<BatchJob>;
}

/**
 * Streams every source of a campaign into the queue, page by page, recording after each page how far
 * it got; a planner started again on the same campaign continues from there.
 */
export async function planCampaign(deps: PlanDeps, id: string): Promise<void> {
  const spec = await deps.store.spec(id);
  for (const [index, source] of spec.sources.entries()) {
    let cursor = await deps.store.planCursor(id, index);
    for await (const page of readSource(deps.s3, source, cursor)) {
      /* Precondition: a cancelled campaign plans nothing more. */
      if ((await deps.store.state(id)) === 'cancelled') return;
      const jobs = batchesOf(id, page.refs, spec.batchSize);
      await enqueue(deps.queue, jobs, { priority: spec.priority, idSeed: `${index}|${cursor ?? 'start'}` });
      await deps.store.addPlanned(id, page.refs.length, index, page.cursor);
      cursor = page.cursor;
    }
  }
  await deps.store.completePlan(id);
}

export interface PlanEstimate {
  readonly objects: number;
  /** Undefined when a source (a CSV manifest) does not tell sizes. */
  readonly bytes: number | undefined;
  readonly kmsCalls: number;
  readonly seconds: number;
}

export interface EstimateRates {
  /** Sustained re-encryption throughput of the deployment, for `rekey` mode. */
  readonly bytesPerSecond: number;
  /** Objects per second S3 copies sustain, for `rewrap` mode. */
  readonly objectsPerSecond: number;
}

/**
 * A dry run: walks the sources without queueing anything. KMS calls are an upper bound (rewrap makes
 * one per distinct data key, which only the objects' metadata tells).
 */
export async function estimatePlan(
  s3: S3Client,
  spec: Pick<CampaignSpec, 'sources' | 'mode' | 'kmsRequestsPerSecond'>,
  rates: EstimateRates,
): Promise<PlanEstimate> {
  let objects = 0;
  let bytes: number | undefined = 0;
  for (const source of spec.sources) {
    for await (const page of readSource(s3, source, undefined)) {
      objects += page.refs.length;
      bytes = bytes === undefined || page.bytes === undefined ? undefined : bytes + page.bytes;
    }
  }
  const kmsCalls = spec.mode === 'rewrap' ? objects : 2 * objects;
  const kmsSeconds = kmsCalls / spec.kmsRequestsPerSecond;
  const workSeconds = spec.mode === 'rekey' && bytes !== undefined ? bytes / rates.bytesPerSecond : objects / rates.objectsPerSecond;
  return { objects, bytes, kmsCalls, seconds: Math.max(kmsSeconds, workSeconds) };
}
