import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Queue } from 'bullmq';
import { batchesOf, enqueue, requestVerification, type BatchJob, type VerifyJob } from './queue.js';
import { readSource, type SourcePage } from './sources.js';
import type { CampaignSource, CampaignSpec } from './spec.js';
import type { CampaignStore, PlanAdvance } from './store.js';

export interface PlanDeps {
  readonly s3: S3Client;
  readonly store: CampaignStore;
  readonly queue: Queue<BatchJob>;
  /** Where a campaign whose objects all settled by the end of its plan asks for its verification. */
  readonly verifyQueue: Queue<VerifyJob>;
}

export interface PlanOptions {
  /**
   * Rows per page of a CSV source (a listing's pages are S3's 1000 keys). A page costs two Redis round
   * trips, and a plan resumed after a crash repeats at most the page in flight; its jobs keep their ids.
   */
  readonly pageSize?: number;
  /** How often a planner held back by backpressure looks again. */
  readonly backpressurePollMs?: number;
  /** Told once each time planning starts waiting for workers. */
  readonly onBackpressure?: () => void;
}

/** The default bound of planned objects not settled yet: about 75 MB of queued jobs in Redis. */
export const DEFAULT_MAX_UNSETTLED = 1_000_000;

/** `superseded`: another planner of the same campaign is further on and finishes the plan. */
export type PlanResult = 'complete' | 'cancelled' | 'superseded';

const DEFAULT_PAGE_SIZE = 5000;

/**
 * Streams every source of a campaign into the queue, page by page, recording after each page how far
 * it got; a planner started again on the same campaign continues from there. A cancelled campaign
 * plans nothing more and its plan counts as complete, so it finishes once its queued objects are out.
 */
export async function planCampaign(deps: PlanDeps, id: string, options: PlanOptions = {}): Promise<PlanResult> {
  const spec = await deps.store.spec(id);
  let step: PlanAdvance = (await deps.store.state(id)) === 'cancelled' ? 'cancelled' : 'advanced';
  for (const [index, source] of spec.sources.entries()) {
    if (step !== 'advanced') break;
    step = await planSource(deps, { id, spec, index, source, pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE, options });
  }
  if (step === 'superseded') return 'superseded';
  // The last object may settle before the plan completes (or there was none): then it is this step
  // that settles the campaign, and asks for its verification.
  if (await deps.store.completePlan(id)) await requestVerification(deps.verifyQueue, id);
  return step === 'cancelled' ? 'cancelled' : 'complete';
}

interface SourcePlan {
  readonly id: string;
  readonly spec: CampaignSpec;
  readonly index: number;
  readonly source: CampaignSource;
  readonly pageSize: number;
  readonly options: PlanOptions;
}

async function planSource(deps: PlanDeps, plan: SourcePlan): Promise<PlanAdvance> {
  const { id, spec, index } = plan;
  let from = await deps.store.planCursor(id, index);
  const pages = readSource(deps.s3, plan.source, from, {
    pageSize: plan.pageSize,
    includeVersions: spec.includeVersions === true,
    modifiedBefore: spec.modifiedBefore,
  });
  let next = prefetch(pages);
  for (;;) {
    const read = await next;
    if (read.done) return 'advanced';
    // The next page is read (parsed, or listed by S3) while this one's Redis writes are in flight.
    next = prefetch(pages);
    const page: SourcePage = read.value;
    if ((await drained(deps, plan)) === 'cancelled') {
      await pages.return(undefined);
      return 'cancelled';
    }
    const jobs = batchesOf(id, page.refs, spec.batchSize);
    await enqueue(deps.queue, jobs, { priority: spec.priority, idSeed: `${index}|${from ?? 'start'}` });
    const step = await deps.store.advancePlan(id, { source: index, from, to: page.cursor, count: page.refs.length });
    if (step !== 'advanced') {
      await pages.return(undefined);
      return step;
    }
    from = page.cursor;
  }
}

/**
 * Backpressure: waits while the campaign has as many planned objects unsettled as it allows, so a
 * billion-key listing never puts more than that many keys in Redis at once. Safe to stop at any point:
 * the plan's cursor is where a resumed planner starts.
 */
async function drained(deps: PlanDeps, plan: SourcePlan): Promise<'go' | 'cancelled'> {
  const max = plan.spec.maxUnsettled ?? DEFAULT_MAX_UNSETTLED;
  let waiting = false;
  while ((await deps.store.unsettled(plan.id)) >= max) {
    if (!waiting) {
      waiting = true;
      await deps.store.setPlanning(plan.id, 'backpressure');
      plan.options.onBackpressure?.();
    }
    if ((await deps.store.state(plan.id)) === 'cancelled') return 'cancelled';
    await sleep(plan.options.backpressurePollMs ?? 1000);
  }
  if (waiting) await deps.store.setPlanning(plan.id, 'listing');
  return 'go';
}

/** The next page, already handled once so a read failing while a Redis write is awaited is not unhandled. */
function prefetch(pages: AsyncGenerator<SourcePage>): Promise<IteratorResult<SourcePage>> {
  const next = pages.next();
  next.catch(() => undefined);
  return next;
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
  spec: Pick<CampaignSpec, 'sources' | 'mode' | 'kmsRequestsPerSecond' | 'includeVersions' | 'modifiedBefore'>,
  rates: EstimateRates,
): Promise<PlanEstimate> {
  let objects = 0;
  let bytes: number | undefined = 0;
  for (const source of spec.sources) {
    for await (const page of readSource(s3, source, undefined, { includeVersions: spec.includeVersions === true, modifiedBefore: spec.modifiedBefore })) {
      objects += page.refs.length;
      bytes = bytes === undefined || page.bytes === undefined ? undefined : bytes + page.bytes;
    }
  }
  const kmsCalls = spec.mode === 'rewrap' ? objects : 2 * objects;
  const kmsSeconds = kmsCalls / spec.kmsRequestsPerSecond;
  const workSeconds = spec.mode === 'rekey' && bytes !== undefined ? bytes / rates.bytesPerSecond : objects / rates.objectsPerSecond;
  return { objects, bytes, kmsCalls, seconds: Math.max(kmsSeconds, workSeconds) };
}
