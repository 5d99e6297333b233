import type { S3Client } from '@aws-sdk/client-s3';
import type { Queue } from 'bullmq';
import { abortUpload } from '../s3/conditional-writes.js';
import type { DurableUploadJournal, UploadJournal } from '../s3/upload-journal.js';
import { notRotated, type Mode, type ObjectOutcome, type ObjectRef, type OutcomeSink } from '../rotate/outcome.js';
import { batchesOf, enqueue, refsOf, type BatchJob } from './queue.js';
import type { CampaignSpec } from './spec.js';
import type { CampaignStore } from './store.js';

/** Rotates a batch of objects of one campaign; what the rotate layer offers the campaign layer. */
export interface BatchRotator {
  rotate(refs: readonly ObjectRef[], journal: UploadJournal, onOutcome?: OutcomeSink): Promise<ObjectOutcome[]>;
}

export interface ProcessorDeps {
  readonly s3: S3Client;
  readonly store: CampaignStore;
  readonly queue: Queue<BatchJob>;
  readonly rotatorFor: (campaignId: string, spec: CampaignSpec) => BatchRotator;
  /** Told when a batch's objects start; the returned function is told each one's outcome, `final` unless it goes back to the queue. */
  readonly observe?: (campaignId: string, mode: Mode, refs: readonly ObjectRef[]) => (outcome: ObjectOutcome, final: boolean) => void;
}

export interface ProcessorOptions {
  /** Attempts per object for retryable failures (throttling, 5xx) before the failure is final. */
  readonly objectAttempts?: number;
  readonly retryDelayMs?: (attempt: number) => number;
}

export type BatchResult = { readonly kind: 'done'; readonly recorded: number; readonly retried: number } | { readonly kind: 'paused' };

const defaultDelay = (attempt: number) => Math.min(60_000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);

/**
 * Processes one batch job: skips objects that already have an outcome (a re-delivered job), aborts
 * uploads a killed worker left open for these objects, rotates the rest, records each final outcome
 * once as it comes, and puts objects with a retryable failure back on the queue with a backoff.
 */
export async function processBatch(deps: ProcessorDeps, job: BatchJob, options: ProcessorOptions = {}): Promise<BatchResult> {
  const { store } = deps;
  const id = job.c;
  const state = await store.state(id);
  if (state === 'paused') return { kind: 'paused' };
  const pending = await pendingRefs(store, id, refsOf(job));
  if (pending.length === 0) return { kind: 'done', recorded: 0, retried: 0 };
  const spec = await store.spec(id);
  const journal = store.journal(id);
  await abortLeftovers(deps.s3, journal, pending);
  const settled = deps.observe?.(id, spec.mode, pending);

  const attempt = (job.a ?? 0) + 1;
  const maxAttempts = options.objectAttempts ?? 5;
  const final = new Set<ObjectOutcome>();
  let recorded = 0;
  // Final outcomes are recorded as each object settles, not when the batch ends: a worker killed
  // mid-batch then takes no finished object's facts (old key, bytes, versions) with it.
  const recordFinal: OutcomeSink = async (outcome) => {
    if (outcome.retryable && attempt < maxAttempts) return;
    final.add(outcome);
    const counted = await store.record(id, outcome);
    if (counted) recorded += 1;
    settled?.(outcome, counted);
  };

  const outcomes =
    state === 'cancelled'
      ? pending.map((ref) => notRotated(ref, spec.mode, 'cancelled', 'the campaign was cancelled'))
      : await deps.rotatorFor(id, spec).rotate(pending, journal, recordFinal);

  const retry: ObjectRef[] = [];
  for (const outcome of outcomes) {
    if (final.has(outcome)) continue;
    if (outcome.retryable && attempt < maxAttempts) {
      retry.push(outcome.ref);
      settled?.(outcome, false);
      continue;
    }
    await recordFinal(outcome);
  }
  const delayMs = (options.retryDelayMs ?? defaultDelay)(attempt);
  await enqueue(deps.queue, batchesOf(id, retry, spec.batchSize, attempt), { priority: spec.priority, delayMs });
  if ((await store.state(id)) === 'done') await abortLeftovers(deps.s3, journal);
  return { kind: 'done', recorded, retried: retry.length };
}

async function pendingRefs(store: CampaignStore, id: string, refs: readonly ObjectRef[]): Promise<ObjectRef[]> {
  const has = await Promise.all(refs.map((ref) => store.hasOutcome(id, ref)));
  return refs.filter((_, i) => !has[i]);
}

/**
 * Aborts the journaled uploads of the given objects or of the whole campaign (design.md invariant 1).
 * Only those: an upload S3 made for an intent whose upload id never arrived cannot be told from another
 * writer's upload of the same key, so it is left, part-less and storing nothing, to the bucket's
 * AbortIncompleteMultipartUpload rule (docs/reliability.md).
 */
export async function abortLeftovers(s3: S3Client, journal: DurableUploadJournal, refs?: readonly ObjectRef[]): Promise<number> {
  const wanted = refs ? new Set(refs.map((r) => `${r.bucket}/${r.key}`)) : undefined;
  const mine = (u: { bucket: string; key: string }) => !wanted || wanted.has(`${u.bucket}/${u.key}`);
  const open = (await journal.open()).filter(mine);
  for (const upload of open) await abortUpload(s3, upload, journal);
  for (const intent of (await journal.intents()).filter(mine)) await journal.dropIntent(intent);
  return open.length;
}
