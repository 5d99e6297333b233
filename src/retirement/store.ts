import type { RedisClient } from '../config/clients.js';
import type { UsageFinding } from '../usage/scan.js';
import type { Actor, AuditTrail } from '../trail/audit-trail.js';

/**
 * Keys in retirement, in the Redis every rekey host shares (the campaign store's Redis and prefix), so
 * the observation period and `rekey keys` are the same from any host. One hash per key (hash tag
 * `{arn}`, single-slot on Redis Cluster) and the list of its steps, each with the proof behind it.
 */

/** `cancelled`: rekey enabled the key again; it is no longer in retirement. */
export type RetirementState = 'disabled' | 'pending-deletion' | 'cancelled';

export interface RetirementScope {
  readonly bucket: string;
  readonly prefix: string;
}

/** What an audit found when a step was taken: the evidence a reviewer of the step needs. */
export interface RetirementProof {
  readonly scopes: readonly RetirementScope[];
  readonly includeVersions: boolean;
  /** Campaigns whose scopes were audited (`--campaign`). */
  readonly campaigns: readonly string[];
  readonly scanned: { readonly objects: number; readonly noncurrentVersions: number; readonly instructionFiles: number };
  readonly remaining: number;
  readonly unreadable: number;
  readonly kmsProbes: number;
  readonly probeKeyArn: string;
}

export type RetirementStepKind = 'disabled' | 'deletion-scheduled' | 'deletion-cancelled' | 'enabled';

export interface RetirementStep {
  readonly step: RetirementStepKind;
  /** Epoch ms, by the retirement clock (Redis's unless overridden, which `clock` then says). */
  readonly at: number;
  readonly clock: string;
  readonly operator: Actor;
  /** The operator's justification (`--reason`). */
  readonly reason?: string | undefined;
  readonly proof?: RetirementProof;
  readonly observedMs?: number;
  readonly pendingDays?: number;
  readonly deletionDate?: number;
}

export interface Retirement {
  readonly keyArn: string;
  readonly keyId: string;
  readonly aliases: readonly string[];
  readonly state: RetirementState;
  /** When rekey last disabled the key: the start of the observation period. */
  readonly disabledAt: number;
  /** The scopes audited when the key was disabled; deletion audits them again. */
  readonly scopes: readonly RetirementScope[];
  readonly includeVersions: boolean;
  readonly deletionDate: number | undefined;
  /** KMS refusals rekey met for this key while it was retiring. */
  readonly refusals: number;
  readonly lastRefusalAt: number | undefined;
  readonly steps: readonly RetirementStep[];
}

export interface StepUpdate {
  readonly keyArn: string;
  readonly keyId: string;
  readonly aliases: readonly string[];
  readonly state: RetirementState;
  readonly step: RetirementStep;
  /** Set by `disabled` steps only: they start the observation period over. */
  readonly scopes?: readonly RetirementScope[];
  readonly includeVersions?: boolean;
}

export class RetirementStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private keys(arn: string) {
    const base = `${this.prefix}:retirement:{${arn}}`;
    return { main: base, steps: `${base}:steps` };
  }

  private get index(): string {
    return `${this.prefix}:retirements`;
  }

  /** The shared clock of every host: Redis's, so a host with a clock ahead cannot shorten an observation period. */
  async now(): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async record(update: StepUpdate): Promise<void> {
    const k = this.keys(update.keyArn);
    const { step } = update;
    const fields: Record<string, string | number> = {
      keyArn: update.keyArn,
      keyId: update.keyId,
      aliases: JSON.stringify(update.aliases),
      state: update.state,
    };
    if (step.step === 'disabled') {
      Object.assign(fields, { disabledAt: step.at, scopes: JSON.stringify(update.scopes ?? []), includeVersions: update.includeVersions ? 1 : 0 });
    }
    const tx = this.redis.multi().hset(k.main, fields).rpush(k.steps, JSON.stringify(step)).zadd(this.index, String(step.at), update.keyArn);
    if (step.deletionDate !== undefined) tx.hset(k.main, 'deletionDate', step.deletionDate);
    else tx.hdel(k.main, 'deletionDate');
    await tx.exec();
  }

  async get(keyArn: string): Promise<Retirement | undefined> {
    const k = this.keys(keyArn);
    const [main, steps] = await Promise.all([this.redis.hgetall(k.main), this.redis.lrange(k.steps, 0, -1)]);
    if (!main.keyArn) return undefined;
    const optional = (field: string) => (main[field] === undefined ? undefined : Number(main[field]));
    return {
      keyArn: main.keyArn,
      keyId: main.keyId ?? '',
      aliases: JSON.parse(main.aliases ?? '[]') as string[],
      state: main.state as RetirementState,
      disabledAt: Number(main.disabledAt ?? 0),
      scopes: JSON.parse(main.scopes ?? '[]') as RetirementScope[],
      includeVersions: main.includeVersions === '1',
      deletionDate: optional('deletionDate'),
      refusals: Number(main.refusals ?? 0),
      lastRefusalAt: optional('lastRefusalAt'),
      steps: steps.map((s) => JSON.parse(s) as RetirementStep),
    };
  }

  /** Every key rekey has retired or is retiring, most recent step first. */
  async list(): Promise<Retirement[]> {
    const arns = await this.redis.zrevrange(this.index, 0, -1);
    const all = await Promise.all(arns.map((arn) => this.get(arn)));
    return all.filter((r): r is Retirement => r !== undefined);
  }

  /** Keys disabled or pending deletion by rekey. */
  async retiring(): Promise<Retirement[]> {
    return (await this.list()).filter((r) => r.state !== 'cancelled');
  }

  async countRefusal(keyArn: string, at: number): Promise<void> {
    const k = this.keys(keyArn);
    await this.redis.multi().hincrby(k.main, 'refusals', 1).hset(k.main, 'lastRefusalAt', at).exec();
  }
}

/** The retiring key a KMS refusal is about: KMS names the key (ARN or key id) in a DisabledException or KMSInvalidStateException. */
export function retiringKeyNamedIn(texts: readonly (string | undefined)[], retiring: readonly Pick<Retirement, 'keyArn' | 'keyId'>[]): string | undefined {
  return retiring.find((r) => texts.some((t) => t !== undefined && (t.includes(r.keyArn) || (r.keyId !== '' && t.includes(r.keyId)))))?.keyArn;
}

export interface RefusalRecorderOptions {
  /** How long the list of retiring keys is trusted before it is read again. */
  readonly refreshMs?: number;
}

/**
 * Counts every refusal rekey itself meets for a retiring key (Redis, for `rekey keys` and the
 * `rekey_retiring_key_refusals_total` metric of every worker) and appends it to the audit trail.
 */
export class RefusalRecorder {
  private cached: { at: number; keys: Promise<Retirement[]> } | undefined;

  constructor(
    private readonly store: RetirementStore,
    private readonly trail: AuditTrail | undefined,
    private readonly options: RefusalRecorderOptions = {},
  ) {}

  private retiring(): Promise<Retirement[]> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > (this.options.refreshMs ?? 15_000)) {
      this.cached = { at: now, keys: this.store.retiring() };
    }
    return this.cached.keys;
  }

  /** Records the refusal when `texts` (an error message, a key id) name a retiring key; returns that key. */
  async note(texts: readonly (string | undefined)[], detail: Readonly<Record<string, unknown>>): Promise<string | undefined> {
    const keyArn = retiringKeyNamedIn(texts, await this.retiring());
    if (keyArn === undefined) return undefined;
    await this.store.countRefusal(keyArn, await this.store.now());
    this.trail?.key('refusal', keyArn, detail);
    return keyArn;
  }

  /** Usage findings KMS refused as disabled or pending deletion: the key-usage scan met the retiring key. */
  async noteFindings(findings: readonly UsageFinding[], source: string): Promise<void> {
    for (const f of findings) {
      if (f.reason !== 'kms-disabled') continue;
      await this.note([f.message], { source, bucket: f.bucket, key: f.key, versionId: f.versionId, reason: f.reason });
    }
  }
}
