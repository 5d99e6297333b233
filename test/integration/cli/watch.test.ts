import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CampaignStore } from '../../../src/campaign/store.js';
import { watchCampaign } from '../../../src/cli/status-view.js';
import { rotated } from '../../../src/rotate/outcome.js';
import { campaignSpec } from '../../helpers/spec.js';
import { openStack, type TestStack } from '../../helpers/stack.js';

/**
 * `rekey run` watches its campaign in the process whose worker moves it: each job that worker finishes
 * is a cue to look, so the run ends with its campaign instead of at the next poll, and no poll's timer
 * is left to hold the process open.
 */
describe('watching a campaign moved by a worker in the same process', () => {
  let stack: TestStack;
  before(() => (stack = openStack()));
  after(() => stack.close());

  test('a finished job is a cue to look: the watch ends with the campaign, not at its next poll', { timeout: 30_000 }, async () => {
    const store = new CampaignStore(stack.redis, stack.config.redisPrefix);
    const id = await store.create(campaignSpec([], { skipVerification: true }));
    await store.advancePlan(id, { source: 0, from: undefined, to: 'end', count: 1 });
    await store.completePlan(id);
    let cue: (() => void) | undefined;
    let looks = 0;
    const watching = watchCampaign(store, id, {
      live: false,
      // A poll no test would wait for: only the cue can end this watch.
      intervalMs: 3_600_000,
      changed: () => {
        looks += 1;
        return new Promise<void>((resolve) => (cue = resolve));
      },
    });
    const lookedAt = async (n: number) => {
      while (looks < n) await new Promise((resolve) => setTimeout(resolve, 5));
    };
    await lookedAt(1);
    cue!();
    // A cue with nothing finished: the watch looks, and waits again.
    await lookedAt(2);
    assert.equal(await store.recordBatch(id, 'only', [rotated({ bucket: 'b', key: 'k' }, 'rewrap', {})]), 'recorded');
    cue!();
    const final = await watching;
    assert.ok(final.finishedAt !== undefined);
    assert.equal(final.state, 'done');
  });
});
