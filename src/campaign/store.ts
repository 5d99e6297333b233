import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../config/clients.js';
import { RekeyError } from '../errors.js';
import type { ObjectOutcome, ObjectRef } from '../rotate/outcome.js';
import type { DurableUploadJournal, UploadIntent } from '../s3/upload-journal.js';
import type { CampaignSpec, CampaignState, CampaignStatus } from './spec.js';

/**
 * A campaign's state in Redis. Every key of one campaign carries the hash tag `{id}`, so the scripts
 * below stay single-slot on Redis Cluster. The outcome of each object is recorded exactly once: a
 * re-delivered job or a second worker cannot count an object twice.
 */
export class CampaignStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {
    defineScripts(redis);
  }

  private get scripts(): ScriptedRedis {
    return this.redis as unknown as ScriptedRedis;
  }

  private keys(id: string) {
    const base = `${this.prefix}:campaign:{${id}}`;
    return {
      main: base,
      reasons: `${base}:reasons`,
      outcomes: `${base}:outcomes`,
      log: `${base}:log`,
      plan: `${base}:plan`,
      uploads: `${base}:uploads`,
      uploadIntents: `${base}:upload-intents`,
    };
  }

  private get index(): string {
    return `${this.prefix}:campaigns`;
  }

  async create(spec: CampaignSpec, id: string = newCampaignId()): Promise<string> {
    const k = this.keys(id);
    const now = Date.now();
    const created = await this.redis.hsetnx(k.main, 'spec', JSON.stringify(spec));
    /* Precondition: a campaign id names one campaign for ever. */
    if (created !== 1) throw new RekeyError('internal', `campaign ${id} exists already`);
    await this.redis.hset(k.main, { state: 'planning', createdAt: now, planned: 0, done: 0, rotated: 0, skipped: 0, failed: 0, bytesRead: 0, bytesWritten: 0, planComplete: 0 });
    // The index lives in a slot of its own, so it is written apart from the campaign's keys.
    await this.redis.zadd(this.index, String(now), id);
    return id;
  }

  async list(): Promise<string[]> {
    return this.redis.zrange(this.index, '0', '-1');
  }

  async spec(id: string): Promise<CampaignSpec> {
    const raw = await this.redis.hget(this.keys(id).main, 'spec');
    if (!raw) throw new RekeyError('internal', `no campaign ${id}`);
    return JSON.parse(raw) as CampaignSpec;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys(id).main)) === 1;
  }

  async state(id: string): Promise<CampaignState> {
    return ((await this.redis.hget(this.keys(id).main, 'state')) ?? 'cancelled') as CampaignState;
  }

  async status(id: string): Promise<CampaignStatus> {
    const k = this.keys(id);
    const [main, reasons] = await Promise.all([this.redis.hgetall(k.main), this.redis.hgetall(k.reasons)]);
    if (!main.spec) throw new RekeyError('internal', `no campaign ${id}`);
    const n = (field: string) => Number(main[field] ?? 0);
    return {
      id,
      spec: JSON.parse(main.spec) as CampaignSpec,
      state: (main.state ?? 'planning') as CampaignState,
      planComplete: main.planComplete === '1',
      createdAt: n('createdAt'),
      finishedAt: main.finishedAt ? Number(main.finishedAt) : undefined,
      planned: n('planned'),
      done: n('done'),
      rotated: n('rotated'),
      skipped: n('skipped'),
      failed: n('failed'),
      bytesRead: n('bytesRead'),
      bytesWritten: n('bytesWritten'),
      byReason: Object.fromEntries(Object.entries(reasons).map(([r, c]) => [r, Number(c)])),
    };
  }

  /**
   * Moves a campaign between states. Only the transitions a user or the planner may make are allowed;
   * a finished or cancelled campaign stays so.
   */
  async transition(id: string, from: readonly CampaignState[], to: CampaignState): Promise<boolean> {
    const ok = (await this.scripts.rekeyTransition(this.keys(id).main, to, Date.now(), ...from)) as number;
    return ok === 1;
  }

  /**
   * Counts a page's objects as planned and moves the source's cursor from `step.from` to `step.to`,
   * in one step and only while the cursor is still at `step.from`: two planners of one campaign (a
   * resumed plan racing a live one, a retried schedule job) never count a page twice.
   */
  async advancePlan(id: string, step: PlanStep): Promise<PlanAdvance> {
    const k = this.keys(id);
    return (await this.scripts.rekeyAdvancePlan(k.main, k.plan, step.source, step.from ?? '', step.to, step.count)) as PlanAdvance;
  }

  async planCursor(id: string, source: number): Promise<string | undefined> {
    return (await this.redis.hget(this.keys(id).plan, String(source))) ?? undefined;
  }

  /** Marks the plan complete; a campaign whose objects all have outcomes by then is done at once. */
  async completePlan(id: string): Promise<void> {
    await this.scripts.rekeyCompletePlan(this.keys(id).main, Date.now());
  }

  /** Records an outcome unless the object has one already; returns whether it counted. */
  async record(id: string, outcome: ObjectOutcome): Promise<boolean> {
    const k = this.keys(id);
    const label = outcome.reason ? `${outcome.outcome}:${outcome.reason}` : '';
    const counted = (await this.scripts.rekeyRecord(
      k.main,
      k.reasons,
      k.outcomes,
      k.log,
      objectId(outcome.ref),
      outcome.outcome,
      label,
      outcome.bytesRead,
      outcome.bytesWritten,
      JSON.stringify(outcome),
      Date.now(),
    )) as number;
    return counted === 1;
  }

  async hasOutcome(id: string, ref: ObjectRef): Promise<boolean> {
    return (await this.redis.hexists(this.keys(id).outcomes, objectId(ref))) === 1;
  }

  /** Forgets failed outcomes so their objects can be tried again; returns the objects. */
  async forgetFailed(id: string): Promise<ObjectRef[]> {
    const refs: ObjectRef[] = [];
    for await (const outcome of this.outcomes(id)) {
      if (outcome.outcome !== 'failed') continue;
      await this.scripts.rekeyForget(
        this.keys(id).main,
        this.keys(id).reasons,
        this.keys(id).outcomes,
        this.keys(id).log,
        objectId(outcome.ref),
        `failed:${outcome.reason}`,
      );
      refs.push(outcome.ref);
    }
    return refs;
  }

  /** Every recorded outcome, oldest first, one per object, streamed page by page. */
  async *outcomes(id: string, pageSize = 1000): AsyncGenerator<ObjectOutcome> {
    const log = this.keys(id).log;
    let start = '-';
    for (;;) {
      const page = await this.redis.xrange(log, start, '+', 'COUNT', pageSize);
      for (const [, fields] of page) yield JSON.parse(fields[1] ?? '{}') as ObjectOutcome;
      if (page.length < pageSize) return;
      start = `(${page[page.length - 1]![0]}`;
    }
  }

  /** The multipart-upload journal of a campaign, so a killed worker's uploads are aborted later. */
  journal(id: string): DurableUploadJournal {
    const { uploads: key, uploadIntents } = this.keys(id);
    const redis = this.redis;
    const intentField = (u: { bucket: string; key: string }) => `${u.bucket}/${u.key}`;
    return {
      async starting(intent) {
        await redis.hset(uploadIntents, intentField(intent), JSON.stringify(intent));
      },
      async started(u) {
        await redis
          .multi()
          .hset(key, u.uploadId, JSON.stringify({ bucket: u.bucket, key: u.key }))
          .hdel(uploadIntents, intentField(u))
          .exec();
      },
      async intents() {
        return Object.values(await redis.hgetall(uploadIntents)).map((v) => JSON.parse(v) as UploadIntent);
      },
      async dropIntent(intent) {
        await redis.hdel(uploadIntents, intentField(intent));
      },
      async finished(u) {
        await redis.hdel(key, u.uploadId);
      },
      async open() {
        const all = await redis.hgetall(key);
        return Object.entries(all).map(([uploadId, v]) => ({ uploadId, ...(JSON.parse(v) as { bucket: string; key: string }) }));
      },
    };
  }
}

export interface PlanStep {
  readonly source: number;
  /** The cursor the page was read from; undefined for a source's first page. */
  readonly from: string | undefined;
  readonly to: string;
  readonly count: number;
}

/**
 * `advanced`: counted; `superseded`: another planner counted this page first, so this one stops;
 * `cancelled`: counted, but the campaign was cancelled, so planning stops.
 */
export type PlanAdvance = 'advanced' | 'superseded' | 'cancelled';

export function newCampaignId(): string {
  return randomUUID().slice(0, 8);
}

export function objectId(ref: ObjectRef): string {
  return ref.versionId ? `${ref.bucket}/${ref.key}?versionId=${ref.versionId}` : `${ref.bucket}/${ref.key}`;
}

interface ScriptedRedis extends Redis {
  rekeyRecord(...args: (string | number)[]): Promise<unknown>;
  rekeyForget(...args: (string | number)[]): Promise<unknown>;
  rekeyTransition(...args: (string | number)[]): Promise<unknown>;
  rekeyCompletePlan(...args: (string | number)[]): Promise<unknown>;
  rekeyAdvancePlan(...args: (string | number)[]): Promise<unknown>;
}

/** A campaign whose plan is complete and whose every object has an outcome is done. */
const FINISH_IF_DONE = `
local function finish_if_done(main, now)
  local h = redis.call('HMGET', main, 'planComplete', 'planned', 'done', 'state')
  if h[1] == '1' and tonumber(h[3]) >= tonumber(h[2]) and (h[4] == 'running' or h[4] == 'planning' or h[4] == 'paused' or h[4] == 'cancelled') then
    if h[4] ~= 'cancelled' then redis.call('HSET', main, 'state', 'done') end
    redis.call('HSETNX', main, 'finishedAt', now)
  end
end
`;

function defineScripts(redis: RedisClient): void {
  if ((redis as unknown as Partial<ScriptedRedis>).rekeyRecord) return;
  redis.defineCommand('rekeyRecord', {
    numberOfKeys: 4,
    lua: `${FINISH_IF_DONE}
      if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
      local entry = redis.call('XADD', KEYS[4], '*', 'o', ARGV[6])
      redis.call('HSET', KEYS[3], ARGV[1], entry)
      redis.call('HINCRBY', KEYS[1], 'done', 1)
      redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
      redis.call('HINCRBY', KEYS[1], 'bytesRead', ARGV[4])
      redis.call('HINCRBY', KEYS[1], 'bytesWritten', ARGV[5])
      if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
      finish_if_done(KEYS[1], ARGV[7])
      return 1`,
  });
  redis.defineCommand('rekeyForget', {
    numberOfKeys: 4,
    lua: `
      local entry = redis.call('HGET', KEYS[3], ARGV[1])
      if not entry then return 0 end
      redis.call('HDEL', KEYS[3], ARGV[1])
      redis.call('XDEL', KEYS[4], entry)
      redis.call('HINCRBY', KEYS[1], 'done', -1)
      redis.call('HINCRBY', KEYS[1], 'failed', -1)
      redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
      redis.call('HDEL', KEYS[1], 'finishedAt')
      redis.call('HSET', KEYS[1], 'state', 'running')
      return 1`,
  });
  redis.defineCommand('rekeyTransition', {
    numberOfKeys: 1,
    lua: `
      local state = redis.call('HGET', KEYS[1], 'state')
      for i = 3, #ARGV do
        if state == ARGV[i] then
          redis.call('HSET', KEYS[1], 'state', ARGV[1])
          return 1
        end
      end
      return 0`,
  });
  // Jobs of a page are queued before it is counted, so a page of a campaign cancelled meanwhile is
  // still counted: its jobs end as skipped:cancelled and done never exceeds planned.
  redis.defineCommand('rekeyAdvancePlan', {
    numberOfKeys: 2,
    lua: `
      local at = redis.call('HGET', KEYS[2], ARGV[1])
      if (at or '') ~= ARGV[2] then return 'superseded' end
      redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
      redis.call('HINCRBY', KEYS[1], 'planned', ARGV[4])
      if redis.call('HGET', KEYS[1], 'state') == 'cancelled' then return 'cancelled' end
      return 'advanced'`,
  });
  redis.defineCommand('rekeyCompletePlan', {
    numberOfKeys: 1,
    lua: `${FINISH_IF_DONE}
      redis.call('HSET', KEYS[1], 'planComplete', '1')
      if redis.call('HGET', KEYS[1], 'state') == 'planning' then redis.call('HSET', KEYS[1], 'state', 'running') end
      finish_if_done(KEYS[1], ARGV[1])
      return 1`,
  });
}
