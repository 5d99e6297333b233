import type { S3Client } from '@aws-sdk/client-s3';
import type { Queue } from 'bullmq';
import { abortUpload } from '../s3/conditional-writes.js';
import type { DurableUploadJournal, UploadJournal } from '../s3/upload-journal.js';
import type { IntentLog, WriteIntent } from '../rotate/intent.js';
import { notRotated, type Mode, type ObjectOutcome, type ObjectRef, type OutcomeSink } from '../rotate/outcome.js';
import { batchesOf, enqueue, refsOf, type BatchJob } from './queue.js';
import type { ReportStore } from './report-store.js';
import type { CampaignSpec, CampaignState } from './spec.js';
import { objectId, type BatchInFlight, type CampaignStore } from './store.js';
import type { UploadJournals } from './upload-journals.js';

/** Rotates a batch of objects of one campaign; what the rotate layer offers the campaign layer. */
export interface BatchRotator {
  rotate(refs: readonly ObjectRef[], journal: UploadJournal, onOutcome?: OutcomeSink, intents?: IntentLog): Promise<ObjectOutcome[]>;
  /** The outcome of a write intent a stopped worker left: `rotated` when its write landed, else undefined. */
  recover(intent: WriteIntent): Promise<ObjectOutcome | undefined>;
}

export interface ProcessorDeps {
  readonly s3: S3Client;
  readonly store: CampaignStore;
  readonly journals: UploadJournals;
  readonly queue: Queue<BatchJob>;
  readonly rotatorFor: (campaignId: string, spec: CampaignSpec) => BatchRotator;
  readonly reportsFor: (campaignId: string, spec: CampaignSpec) => ReportStore;
  /** Told when a campaign's last object settled and its closing verification is due; idempotent. */
  readonly onSettled?: (campaignId: string) => Promise<void>;
  /** Told when a batch's objects start; the returned function is told each one's outcome, `final` unless it goes back to the queue. */
  readonly observe?: (campaignId: string, mode: Mode, refs: readonly ObjectRef[]) => (outcome: ObjectOutcome, final: boolean) => void;
}

export interface ProcessorOptions {
  /** Attempts per object for retryable failures (throttling, 5xx) before the failure is final. */
  readonly objectAttempts?: number;
  readonly retryDelayMs?: (attempt: number) => number;
}

export type BatchResult = { readonly kind: 'done'; readonly recorded: number; readonly retried: number } | { readonly kind: 'paused' };

const SETTLED: readonly CampaignState[] = ['verifying', 'done', 'done-with-remainder'];

const defaultDelay = (attempt: number) => Math.min(60_000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);

/**
 * Processes one batch job, named by `batchId` (its job id, stable across re-deliveries):
 * - a batch already recorded has nothing left to do;
 * - objects that settled before a crash keep their outcome; an object whose write intent is left
 *   and whose write landed is recorded `rotated` from the intent; the rest are rotated, each
 *   object's intent stored before its write and its final outcome kept as it settles;
 * - objects with a retryable failure go back to the queue as a batch of their own, with a backoff;
 * - the batch's final rows are written to the report store, then counted once with its marker.
 */
export async function processBatch(deps: ProcessorDeps, job: BatchJob, batchId: string, options: ProcessorOptions = {}): Promise<BatchResult> {
  const { store } = deps;
  const id = job.c;
  if (await store.batchRecorded(id, batchId)) {
    // The worker that recorded it may have stopped before asking for the verification.
    if ((await store.state(id)) === 'verifying') await deps.onSettled?.(id);
    return { kind: 'done', recorded: 0, retried: 0 };
  }
  const state = await store.state(id);
  if (state === 'paused') return { kind: 'paused' };
  const spec = await store.spec(id);
  const flight = store.inFlight(id, batchId);
  const before = await flight.load();
  const attempt = (job.a ?? 0) + 1;
  const maxAttempts = options.objectAttempts ?? 5;
  const retryLater = (refs: readonly ObjectRef[], handOff: number) =>
    enqueue(deps.queue, batchesOf(id, refs, spec.batchSize, attempt), {
      priority: spec.priority,
      delayMs: (options.retryDelayMs ?? defaultDelay)(attempt),
      idSeed: `retry|${batchId}|${attempt}|${handOff}`,
    });
  // Objects an earlier attempt of this batch handed to a retry batch belong to that batch: queued again
  // under the same job ids (nothing is added if it is queued), never rotated or recorded here.
  for (const [handOff, refs] of before.handedOff.entries()) await retryLater(refs, handOff);
  const handedOff = new Set(before.handedOff.flat().map(objectId));
  const pending = refsOf(job).filter((ref) => !before.rows.has(objectId(ref)) && !handedOff.has(objectId(ref)));
  const journal = deps.journals.of(id);
  await abortLeftovers(deps.s3, journal, pending);
  const settled = deps.observe?.(id, spec.mode, pending);

  const final = new Set<ObjectOutcome>();
  let recorded = 0;
  // Final outcomes are kept as each object settles, not when the batch ends: a worker killed
  // mid-batch then takes no finished object's facts (old key, bytes, versions) with it.
  const recordFinal: OutcomeSink = async (found) => {
    if (found.retryable && attempt < maxAttempts) return;
    const outcome = await ownWrite(deps, id, spec, flight, found);
    final.add(outcome);
    const counted = await flight.settle(outcome);
    if (counted) recorded += 1;
    settled?.(outcome, counted);
  };

  let outcomes: ObjectOutcome[];
  if (state === 'cancelled') {
    outcomes = pending.map((ref) => notRotated(ref, spec.mode, 'cancelled', 'the campaign was cancelled'));
  } else {
    const rotator = deps.rotatorFor(id, spec);
    const recovered = await recoverIntents(rotator, pending, before.intents, recordFinal);
    const rest = pending.filter((ref) => !recovered.has(objectId(ref)));
    outcomes = await rotator.rotate(rest, journal, recordFinal, flight);
  }

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
  if (retry.length > 0) await retryLater(retry, await flight.handOff(retry));

  const claimed = await flight.claim();
  // Recorded meanwhile by a worker that took the batch over: its file holds every row already.
  const rows = claimed ? refsOf(job).flatMap((ref) => claimed.get(objectId(ref)) ?? []) : [];
  if (rows.length > 0) await deps.reportsFor(id, spec).putBatch(batchId, rows);
  const result = claimed ? await store.recordBatch(id, batchId, rows) : 'duplicate';
  // The other worker deleted the batch's state when it recorded it; this one's late settles made it again.
  if (!claimed) await flight.forget();
  if (result === 'verify') await deps.onSettled?.(id);
  // Once every object settled no upload of the campaign can be in flight: whatever is open is left over.
  if (SETTLED.includes(await store.state(id))) await abortLeftovers(deps.s3, journal);
  return { kind: 'done', recorded, retried: retry.length };
}

/**
 * An object found under the target key may carry this batch's own write, made by another worker that
 * held the batch (a lapsed lock) or by this one before its answer was lost: its intent tells, and the
 * object is then recorded `rotated` with the facts of that write, not `already-rotated`.
 */
async function ownWrite(deps: ProcessorDeps, id: string, spec: CampaignSpec, flight: BatchInFlight, outcome: ObjectOutcome): Promise<ObjectOutcome> {
  if (outcome.reason !== 'already-rotated') return outcome;
  const intent = await flight.intentOf(outcome.ref);
  return (intent && (await deps.rotatorFor(id, spec).recover(intent))) ?? outcome;
}

/** Objects whose intent shows their write landed, recorded from the intent; returns their ids. */
async function recoverIntents(rotator: BatchRotator, refs: readonly ObjectRef[], intents: ReadonlyMap<string, WriteIntent>, record: OutcomeSink): Promise<Set<string>> {
  const recovered = new Set<string>();
  for (const ref of refs) {
    const intent = intents.get(objectId(ref));
    const outcome = intent && (await rotator.recover(intent));
    if (!outcome) continue;
    await record(outcome);
    recovered.add(objectId(ref));
  }
  return recovered;
}

/**
 * Aborts the journaled uploads of the given objects or of the whole campaign (docs/design.md §4.1).
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
