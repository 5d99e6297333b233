import { randomUUID } from 'node:crypto';
import { Queue, type Job } from 'bullmq';
import type { RedisClient } from '../config/clients.js';
import type { Config } from '../config/config.js';
import { RekeyError } from '../errors.js';
import { planCampaign, type PlanDeps } from './planner.js';
import { openQueue } from './queue.js';
import { ageCutoff, type CampaignSpec, type CampaignState } from './spec.js';

/**
 * Scheduled campaigns. A schedule is a campaign template plus a BullMQ job scheduler on its own queue:
 * each firing puts one planning job there, and a worker turns it into a campaign of its own (linked to
 * the schedule) whose plan holds only objects older than the schedule's minimum age, then plans it.
 *
 * The age of a data key is taken from the object's LastModified. For `rekey` runs that is exact: a
 * rekey writes the new data key and the new body in one write. For `rewrap` runs it is the age of the
 * wrapping, which is what a rewrap renews (a rewrap rewrites the object, so LastModified moves). A
 * writer that caches data keys may have made the key earlier than the object, by up to its cache's
 * lifetime, and a CopyObject by anyone else resets LastModified without a new key: both make an object
 * look younger than its key, so it waits for a later run.
 */

/** Planning jobs get their own queue, so a large plan never waits behind rotation batches. */
export const PLAN_QUEUE_NAME = 'plan';

export interface ScheduleJob {
  /** The schedule id; the job holds nothing else. */
  readonly s: string;
}

export interface Schedule {
  readonly id: string;
  /** The campaign each run makes, before its age cut-off is set. */
  readonly spec: CampaignSpec;
  readonly everyMs: number;
  readonly minAgeMs: number;
  readonly createdAt: number;
}

export interface ScheduleRun {
  readonly campaignId: string;
  readonly firedAt: number;
}

export function makePlanQueue(config: Config, redis: RedisClient): Queue<ScheduleJob> {
  return openQueue<ScheduleJob>(PLAN_QUEUE_NAME, config, redis);
}

export function newScheduleId(): string {
  return `s-${randomUUID().slice(0, 8)}`;
}

/** Each firing names its campaign, so a retried planning job resumes the same campaign. */
export function runCampaignId(scheduleId: string, firedAt: number): string {
  return `${scheduleId}-${firedAt.toString(36)}`;
}

/** Schedules and their runs in Redis, beside the campaigns. */
export class ScheduleStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private key(id: string): string {
    return `${this.prefix}:schedule:{${id}}`;
  }

  private runsKey(id: string): string {
    return `${this.key(id)}:runs`;
  }

  private get index(): string {
    return `${this.prefix}:schedules`;
  }

  async create(schedule: Schedule): Promise<void> {
    const created = await this.redis.hsetnx(this.key(schedule.id), 'schedule', JSON.stringify(schedule));
    /* Precondition: a schedule id names one schedule for ever. */
    if (created !== 1) throw new RekeyError('internal', `schedule ${schedule.id} exists already`);
    await this.redis.zadd(this.index, String(schedule.createdAt), schedule.id);
  }

  async get(id: string): Promise<Schedule | undefined> {
    const raw = await this.redis.hget(this.key(id), 'schedule');
    return raw ? (JSON.parse(raw) as Schedule) : undefined;
  }

  async list(): Promise<Schedule[]> {
    const ids = await this.redis.zrange(this.index, '0', '-1');
    const all = await Promise.all(ids.map((id) => this.get(id)));
    return all.filter((s): s is Schedule => s !== undefined);
  }

  /** Forgets the schedule; its runs stay campaigns of their own. */
  async remove(id: string): Promise<boolean> {
    const [[, removed]] = (await this.redis.multi().del(this.key(id)).del(this.runsKey(id)).exec()) as [[unknown, number]];
    // The index lives in a slot of its own; list() skips an id whose schedule is gone meanwhile.
    await this.redis.zrem(this.index, id);
    return removed === 1;
  }

  /** Idempotent: a retried firing records its run once. */
  async addRun(id: string, run: ScheduleRun): Promise<void> {
    await this.redis.zadd(this.runsKey(id), String(run.firedAt), run.campaignId);
  }

  /** The newest runs first. */
  async runs(id: string, count = 10): Promise<ScheduleRun[]> {
    const flat = await this.redis.zrevrange(this.runsKey(id), 0, count - 1, 'WITHSCORES');
    const runs: ScheduleRun[] = [];
    for (let i = 0; i < flat.length; i += 2) runs.push({ campaignId: flat[i]!, firedAt: Number(flat[i + 1]) });
    return runs;
  }
}

export interface ScheduleDeps {
  readonly schedules: ScheduleStore;
  readonly planQueue: Queue<ScheduleJob>;
}

/** Stores the schedule, then registers its job scheduler; BullMQ fires the first run at once. */
export async function createSchedule(deps: ScheduleDeps, schedule: Schedule): Promise<void> {
  await deps.schedules.create(schedule);
  await deps.planQueue.upsertJobScheduler(
    schedule.id,
    { every: schedule.everyMs },
    {
      name: 'scheduled-run',
      data: { s: schedule.id },
      opts: { attempts: 5, backoff: { type: 'exponential', delay: 5_000 }, removeOnComplete: 100, removeOnFail: 100 },
    },
  );
}

export async function removeSchedule(deps: ScheduleDeps, id: string): Promise<boolean> {
  const unscheduled = await deps.planQueue.removeJobScheduler(id);
  const forgotten = await deps.schedules.remove(id);
  return unscheduled || forgotten;
}

/** When the schedule fires next, as BullMQ has it; undefined once removed. */
export async function nextFiring(queue: Queue<ScheduleJob>, id: string): Promise<number | undefined> {
  return (await queue.getJobScheduler(id))?.next;
}

/** A run in one of these states holds the next firings back; cancelling it lets the schedule go on. */
const UNFINISHED: readonly CampaignState[] = ['planning', 'running', 'paused'];

export type RunResult =
  /** `spec` is set when this firing created the campaign (not when a retried job resumes its plan). */
  | { readonly kind: 'planned'; readonly campaignId: string; readonly spec?: CampaignSpec }
  /** The previous run is still planning, running or paused: runs never pile up on a slow campaign. */
  | { readonly kind: 'skipped'; readonly previous: string }
  | { readonly kind: 'unscheduled' };

/**
 * A firing of a schedule: one campaign per firing, created once and planned to the end. A retried job
 * (its worker died mid-plan) finds its campaign and resumes the plan from the saved cursors.
 */
export async function runSchedule(deps: PlanDeps & { readonly schedules: ScheduleStore }, job: Pick<Job<ScheduleJob>, 'id' | 'data' | 'timestamp'>): Promise<RunResult> {
  const schedule = await deps.schedules.get(job.data.s);
  if (schedule === undefined) return { kind: 'unscheduled' };
  const firedAt = firedAtOf(job);
  const campaignId = runCampaignId(schedule.id, firedAt);
  let created: CampaignSpec | undefined;
  if (!(await deps.store.exists(campaignId))) {
    const [previous] = await deps.schedules.runs(schedule.id, 1);
    if (previous && (await deps.store.exists(previous.campaignId)) && UNFINISHED.includes(await deps.store.state(previous.campaignId))) {
      return { kind: 'skipped', previous: previous.campaignId };
    }
    created = runSpec(schedule, firedAt);
    await deps.store.create(created, campaignId);
  }
  await deps.schedules.addRun(schedule.id, { campaignId, firedAt });
  await planCampaign(deps, campaignId);
  return { kind: 'planned', campaignId, ...(created ? { spec: created } : {}) };
}

/** BullMQ names a scheduler's jobs `repeat:<scheduler id>:<firing time in ms>`. */
function firedAtOf(job: Pick<Job<ScheduleJob>, 'id' | 'timestamp'>): number {
  const match = /:(\d+)$/.exec(job.id ?? '');
  return match ? Number(match[1]) : job.timestamp;
}

function runSpec(schedule: Schedule, firedAt: number): CampaignSpec {
  return {
    ...schedule.spec,
    name: `${schedule.spec.name} (${new Date(firedAt).toISOString()})`,
    modifiedBefore: ageCutoff(firedAt, schedule.minAgeMs),
    schedule: { id: schedule.id, firedAt },
  };
}
