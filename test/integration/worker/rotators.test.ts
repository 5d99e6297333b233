import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isFinished, type CampaignState } from '../../../src/campaign/spec.js';
import { makeRedis } from '../../../src/config/clients.js';
import { CampaignStore } from '../../../src/campaign/store.js';
import { RotatorCache } from '../../../src/worker/rotators.js';
import { campaignSpec } from '../../helpers/spec.js';
import { openStack, type TestStack } from '../../helpers/stack.js';

/** A worker's rotator cache against campaign states in Redis, as CampaignWorker wires it. */
describe('the worker drops the rotators of finished campaigns', () => {
  let stack: TestStack;
  let store: CampaignStore;
  before(() => {
    stack = openStack();
    store = new CampaignStore(stack.redis, stack.config.redisPrefix);
  });
  after(() => stack.close());

  const cacheOn = (campaigns: CampaignStore, onSweepError?: (err: unknown) => void) =>
    new RotatorCache<{ campaign: string }>({ isFinished: async (id) => isFinished(await campaigns.state(id)), ...(onSweepError ? { onSweepError } : {}) });

  async function campaignIn(state: CampaignState): Promise<string> {
    const id = await store.create(campaignSpec([]));
    if (state !== 'planning') assert.equal(await store.transition(id, ['planning'], state), true);
    return id;
  }

  test('a new campaign sweeps out done, done-with-remainder and cancelled ones; live ones stay', async () => {
    const states: CampaignState[] = ['running', 'paused', 'verifying', 'done', 'done-with-remainder', 'cancelled'];
    const ids = await Promise.all(states.map(async (state) => ({ state, id: await campaignIn('running') })));
    const cache = cacheOn(store);
    for (const { id } of ids) cache.get(id, () => ({ campaign: id }));
    await cache.idle();
    assert.equal(cache.campaigns().length, states.length, 'all were running when made');

    for (const { state, id } of ids) assert.equal(await store.transition(id, ['running'], state), true);
    const next = await campaignIn('running');
    cache.get(next, () => ({ campaign: next }));
    await cache.idle();
    const kept = ids.filter(({ state }) => ['running', 'paused', 'verifying'].includes(state)).map(({ id }) => id);
    assert.deepEqual(cache.campaigns().sort(), [...kept, next].sort());
  });

  test('an entry is made once per campaign, and made again for a campaign running again after it was dropped', async () => {
    const id = await campaignIn('running');
    const cache = cacheOn(store);
    let made = 0;
    const make = () => ({ campaign: `${id}#${++made}` });
    const first = cache.get(id, make);
    assert.equal(cache.get(id, make), first);
    await store.transition(id, ['running'], 'done');
    await cache.sweep();
    assert.deepEqual(cache.campaigns(), []);
    // `rekey retry` runs a finished campaign again.
    await store.transition(id, ['done'], 'running');
    assert.deepEqual(cache.get(id, make), { campaign: `${id}#2` });
    await cache.idle();
    assert.deepEqual(cache.campaigns(), [id]);
  });

  test('a state that cannot be read keeps the entry and is reported', async () => {
    const id = await campaignIn('done');
    const lost = makeRedis(stack.config);
    await lost.quit();
    const errors: unknown[] = [];
    const cache = cacheOn(new CampaignStore(lost, stack.config.redisPrefix), (err) => errors.push(err));
    cache.get(id, () => ({ campaign: id }));
    await cache.idle();
    assert.deepEqual(cache.campaigns(), [id]);
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /Connection is closed/);
  });
});
