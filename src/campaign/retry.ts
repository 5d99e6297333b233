import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import { objectId } from './store.js';
import { batchesOf, enqueue, type BatchJob } from './queue.js';
import type { ReportStore } from './report-store.js';
import type { CampaignStore } from './store.js';

export interface RetryDeps {
  readonly store: CampaignStore;
  readonly queue: Queue<BatchJob>;
  readonly reports: ReportStore;
}

/**
 * Queues a campaign's failed objects again, batch file by batch file: the failed rows are un-counted
 * once (a marker named by the batch and its failed objects), queued as a batch whose job ids derive
 * from the same name, then dropped from their batch file. Each step is safe to repeat, so `retry` run
 * again after a crash neither loses a failed row nor queues or un-counts it twice. Returns how many
 * objects were queued.
 */
export async function retryFailed(deps: RetryDeps, id: string): Promise<number> {
  const spec = await deps.store.spec(id);
  let queued = 0;
  for await (const { batchId, rows } of deps.reports.batches()) {
    const failed = rows.filter((r) => r.outcome === 'failed');
    if (failed.length === 0) continue;
    const name = `retry|${batchId}|${createHash('sha1').update(failed.map((r) => objectId(r.ref)).join('\n')).digest('hex')}`;
    await deps.store.forgetFailures(id, name, failed);
    await enqueue(deps.queue, batchesOf(id, failed.map((r) => r.ref), spec.batchSize), { priority: spec.priority, idSeed: name });
    await deps.reports.putBatch(batchId, rows.filter((r) => r.outcome !== 'failed'));
    queued += failed.length;
  }
  return queued;
}
