import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../config/clients.js';
import { RekeyError } from '../errors.js';
import { defineLuaCommands, loadLuaCommands } from '../redis/lua-commands.js';
import type { IntentLog, WriteIntent } from '../rotate/intent.js';
import type { ObjectOutcome, ObjectRef } from '../rotate/outcome.js';
import type { CampaignSpec, CampaignState, CampaignStatus, PlanActivity, Verification } from './spec.js';

/**
 * A campaign's state in Redis: counters, counts by reason, the plan's cursors, a marker per recorded
 * batch, and the in-flight state of batches being processed. The rows themselves go to the campaign's
 * ReportStore, so Redis holds a few bytes per object whatever the campaign's size. Every key of one
 * campaign carries the hash tag `{id}`, so its scripts (commands/*.lua) stay single-slot on Redis Cluster. A
 * batch is counted exactly once: a re-delivered job or a second worker cannot count it twice, and
 * within a batch each object settles once.
 */
export class CampaignStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {
    defineLuaCommands(redis, COMMANDS);
  }

  private get scripts(): ScriptedRedis {
    return this.redis as unknown as ScriptedRedis;
  }

  private keys(id: string) {
    const base = campaignKey(this.prefix, id);
    return {
      main: base,
      reasons: `${base}:reasons`,
      batches: `${base}:batches`,
      sourceKeys: `${base}:source-keys`,
      plan: `${base}:plan`,
      /** Objects whose envelope a rekey is moving out of their instruction file, from intent to outcome. */
      moving: `${base}:moving`,
    };
  }

  /** A batch's in-flight state, kept until the batch is recorded: rows, write intents, retry hand-offs. */
  private batchKeys(id: string, batchId: string) {
    const base = `${campaignKey(this.prefix, id)}:b:${batchId}`;
    return { rows: `${base}:rows`, intents: `${base}:intents`, handoffs: `${base}:retry` };
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
    await this.redis.hset(k.main, { state: 'planning', createdAt: now, planned: 0, done: 0, rotated: 0, skipped: 0, failed: 0, bytesRead: 0, bytesWritten: 0, planComplete: 0, skipVerification: spec.skipVerification ? 1 : 0 });
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
      planning: (main.planning ?? 'listing') as PlanActivity,
      verification: main.verification ? (JSON.parse(main.verification) as Verification) : undefined,
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

  /**
   * Marks the plan complete; a campaign whose objects all settled by then (none planned, or workers
   * faster than the listing) settles now: true when it now awaits its closing verification.
   */
  async completePlan(id: string): Promise<boolean> {
    return ((await this.scripts.rekeyCompletePlan(this.keys(id).main, Date.now())) as number) === 1;
  }

  /** Sets what planning is doing, for `status`: listing the sources, or waiting for workers to drain. */
  async setPlanning(id: string, activity: PlanActivity): Promise<void> {
    await this.redis.hset(this.keys(id).main, 'planning', activity);
  }

  /** Objects planned and not yet settled: what the planner's backpressure bounds. */
  async unsettled(id: string): Promise<number> {
    const [planned, done] = await this.redis.hmget(this.keys(id).main, 'planned', 'done');
    return Number(planned ?? 0) - Number(done ?? 0);
  }

  /** Whether a batch's rows are durable and counted: a re-delivered batch then has nothing to do. */
  async batchRecorded(id: string, batchId: string): Promise<boolean> {
    return (await this.redis.sismember(this.keys(id).batches, batchId)) === 1;
  }

  /**
   * A batch in flight: the write intents and the settled outcomes of its objects, kept in Redis only
   * until the batch's rows are durable in the report store. A worker that takes the batch over after a
   * crash finds what the killed one wrote and settled.
   */
  inFlight(id: string, batchId: string): BatchInFlight {
    const k = this.keys(id);
    const { rows, intents, handoffs } = this.batchKeys(id, batchId);
    const { batches, moving } = k;
    const redis = this.redis;
    const scripted = this.scripts;
    return {
      async load() {
        const [settled, intended, handed] = await Promise.all([redis.hgetall(rows), redis.hgetall(intents), redis.lrange(handoffs, 0, -1)]);
        return {
          rows: new Map(Object.entries(settled).map(([object, json]) => [object, JSON.parse(json) as ObjectOutcome])),
          intents: new Map(Object.entries(intended).map(([object, json]) => [object, JSON.parse(json) as WriteIntent])),
          handedOff: handed.map((json) => JSON.parse(json) as ObjectRef[]),
        };
      },
      async handOff(refs) {
        return (await redis.rpush(handoffs, JSON.stringify(refs))) - 1;
      },
      async intend(intent) {
        const id = objectId(intent.ref);
        const write = redis.multi().hset(intents, id, JSON.stringify(intent));
        if (intent.instructionFile !== undefined) write.sadd(moving, id);
        await write.exec();
      },
      async movingFromInstructionFile(bucket, key) {
        return (await redis.sismember(moving, objectId({ bucket, key }))) === 1;
      },
      async intentOf(ref) {
        const json = await redis.hget(intents, objectId(ref));
        return json ? (JSON.parse(json) as WriteIntent) : undefined;
      },
      async settle(outcome) {
        const id = objectId(outcome.ref);
        // Settled after the rotation dropped the instruction file it made stale: the move is over.
        const [[, kept]] = (await redis.multi().hsetnx(rows, id, JSON.stringify(outcome)).srem(moving, id).exec()) as [[unknown, number], unknown];
        return kept === 1;
      },
      async forget() {
        await redis.del(rows, intents, handoffs);
      },
      async claim() {
        const all = (await scripted.rekeyClaimRows(batches, rows, batchId)) as string[] | null;
        if (all === null) return undefined;
        const byObject = new Map<string, ObjectOutcome>();
        for (let i = 0; i + 1 < all.length; i += 2) byObject.set(all[i]!, JSON.parse(all[i + 1]!) as ObjectOutcome);
        return byObject;
      },
    };
  }

  /**
   * Counts a batch's final outcomes once its rows are durable, in one step with its marker, and
   * forgets its in-flight state. Returns `verify` when this batch settled the campaign's last object
   * and the campaign now waits for its closing verification.
   */
  async recordBatch(id: string, batchId: string, rows: readonly ObjectOutcome[]): Promise<RecordResult> {
    const k = this.keys(id);
    const b = this.batchKeys(id, batchId);
    const t = totalsOf(rows);
    const reasons = Object.entries(t.byReason).flat();
    const result = (await this.scripts.rekeyRecordBatch(
      k.main,
      k.reasons,
      k.batches,
      b.rows,
      b.intents,
      k.sourceKeys,
      b.handoffs,
      batchId,
      Date.now(),
      t.done,
      t.rotated,
      t.skipped,
      t.failed,
      t.bytesRead,
      t.bytesWritten,
      reasons.length / 2,
      ...reasons,
      ...t.sourceKeys,
    )) as string;
    return result as RecordResult;
  }

  /**
   * Un-counts the failed rows of one batch before they are queued again as batch `retryId`; once only,
   * so a `retry` run again after a crash neither un-counts twice nor loses a row.
   */
  async forgetFailures(id: string, retryId: string, failed: readonly ObjectOutcome[]): Promise<boolean> {
    const k = this.keys(id);
    const t = totalsOf(failed);
    const reasons = Object.entries(t.byReason).flat();
    const forgot = (await this.scripts.rekeyForgetFailures(k.main, k.reasons, k.batches, `forgot:${retryId}`, t.failed, reasons.length / 2, ...reasons)) as number;
    return forgot === 1;
  }

  /** The KMS keys that rotated objects came from: whose remainders the closing verification counts. */
  async sourceKeys(id: string): Promise<string[]> {
    return (await this.redis.smembers(this.keys(id).sourceKeys)).sort();
  }

  /** Stores the closing verification and ends the campaign: `done` when nothing remains. */
  async recordVerification(id: string, verification: Verification): Promise<CampaignState> {
    const state = verification.remaining === 0 && verification.unreadable === 0 ? 'done' : 'done-with-remainder';
    const ok = (await this.scripts.rekeyVerified(this.keys(id).main, state, JSON.stringify(verification), Date.now())) as number;
    return ok === 1 ? state : await this.state(id);
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

/**
 * The key of a campaign's main hash, and the stem of its other keys: the hash tag `{id}` puts them all
 * in one slot of a Redis Cluster.
 */
export function campaignKey(prefix: string, id: string): string {
  return `${prefix}:campaign:{${id}}`;
}

export function newCampaignId(): string {
  return randomUUID().slice(0, 8);
}

export function objectId(ref: ObjectRef): string {
  return ref.versionId ? `${ref.bucket}/${ref.key}?versionId=${ref.versionId}` : `${ref.bucket}/${ref.key}`;
}

/** Its intents are stored before the write that would move the object: the proof a write was this campaign's. */
export interface BatchInFlight extends IntentLog {
  /** `handedOff`: the objects each earlier attempt of the batch handed to retry batches, in order. */
  load(): Promise<{ rows: Map<string, ObjectOutcome>; intents: Map<string, WriteIntent>; handedOff: ObjectRef[][] }>;
  /**
   * Keeps that these objects go to a retry batch, before it is queued; returns the hand-off's index, from
   * which its job ids are made. An attempt of the batch after a crash queues them again under the same
   * ids and never rotates them itself, so no object gets an outcome from both batches.
   */
  handOff(refs: readonly ObjectRef[]): Promise<number>;
  intentOf(ref: ObjectRef): Promise<WriteIntent | undefined>;
  /** Keeps an object's final outcome until the batch is recorded; false when it had one already. */
  settle(outcome: ObjectOutcome): Promise<boolean>;
  /**
   * The batch's kept outcomes, read in one step with checking that nobody recorded the batch yet;
   * undefined once it is recorded. Two workers on one batch (a lapsed lock) then both write the
   * whole set or nothing, never a file short of rows another wrote before.
   */
  claim(): Promise<Map<string, ObjectOutcome> | undefined>;
  /** Drops what a worker that lost the batch to another (which recorded it) left in flight. */
  forget(): Promise<void>;
}

/** `recorded`: counted now; `duplicate`: counted before; `verify`: counted, and the campaign awaits its closing verification. */
export type RecordResult = 'recorded' | 'duplicate' | 'verify';

interface Totals {
  done: number;
  rotated: number;
  skipped: number;
  failed: number;
  bytesRead: number;
  bytesWritten: number;
  byReason: Record<string, number>;
  sourceKeys: string[];
}

function totalsOf(rows: readonly ObjectOutcome[]): Totals {
  const t: Totals = { done: rows.length, rotated: 0, skipped: 0, failed: 0, bytesRead: 0, bytesWritten: 0, byReason: {}, sourceKeys: [] };
  const keys = new Set<string>();
  for (const row of rows) {
    t[row.outcome] += 1;
    t.bytesRead += row.bytesRead;
    t.bytesWritten += row.bytesWritten;
    if (row.reason) {
      const label = `${row.outcome}:${row.reason}`;
      t.byReason[label] = (t.byReason[label] ?? 0) + 1;
    }
    if (row.oldKeyId && row.oldKeyId !== row.newKeyId) keys.add(row.oldKeyId);
  }
  t.sourceKeys = [...keys];
  return t;
}

interface ScriptedRedis extends Redis {
  rekeyRecordBatch(...args: (string | number)[]): Promise<unknown>;
  rekeyClaimRows(...args: (string | number)[]): Promise<unknown>;
  rekeyForgetFailures(...args: (string | number)[]): Promise<unknown>;
  rekeyVerified(...args: (string | number)[]): Promise<unknown>;
  rekeyTransition(...args: (string | number)[]): Promise<unknown>;
  rekeyCompletePlan(...args: (string | number)[]): Promise<unknown>;
  rekeyAdvancePlan(...args: (string | number)[]): Promise<unknown>;
}

const COMMANDS = loadLuaCommands(new URL('./commands/', import.meta.url), 'rekey');
