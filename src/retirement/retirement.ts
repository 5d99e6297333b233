import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import { ConfigError } from '../errors.js';
import type { KmsBatcher } from '../kms/batcher.js';
import { mayHoldVersions } from '../s3/versioning.js';
import { cancelKeyDeletion, describeKey, disableKey, enableKey, isAwsManaged, scheduleKeyDeletion, type KeyFacts } from '../kms/key-lifecycle.js';
import { scanKeyUsage, type UsageFinding } from '../usage/scan.js';
import type { Actor, AuditTrail } from '../trail/audit-trail.js';
import {
  retiringKeyNamedIn,
  type RefusalRecorder,
  type Retirement,
  type RetirementProof,
  type RetirementScope,
  type RetirementStep,
  type RetirementStepKind,
  type RetirementStore,
} from './store.js';
import { isFinished } from '../campaign/spec.js';
import type { CampaignStore } from '../campaign/store.js';

/**
 * Retiring a KMS key the way a key custodian does: prove nothing in scope still depends on it, disable
 * it (reversible), observe, prove it again, then schedule its deletion with a pending window in which
 * it can still be cancelled. Every step and every refused step lands in the audit trail with its proof.
 */

/** Why a step was refused; the CLI turns each into an exit code (README: "Retiring a key"). */
export type RetireRefusal =
  | 'key-in-use'
  | 'key-use-unproven'
  | 'aws-managed-key'
  | 'key-state'
  | 'not-retiring'
  | 'observation-period'
  | 'replicas-remain'
  | 'campaign-uses-key';

export class RetirementRefused extends Error {
  constructor(
    readonly reason: RetireRefusal,
    message: string,
    readonly proof?: RetirementProof,
  ) {
    super(message);
    this.name = 'RetirementRefused';
  }
}

/** The clock of the observation period, and its name for the proof. */
export interface RetirementClock {
  readonly name: string;
  now(): Promise<number>;
}

export interface RetirementDeps {
  readonly s3: S3Client;
  readonly kmsClient: KMSClient;
  /** For the audits' ReEncrypt probes, paced by its rate limiter. */
  readonly kms: KmsBatcher;
  readonly store: RetirementStore;
  readonly campaigns: CampaignStore;
  readonly refusals: RefusalRecorder;
  readonly trail: AuditTrail;
  readonly actor: Actor;
  readonly clock: RetirementClock;
  /** Told each entry that blocks the step: under the key, or unreadable. */
  readonly onFinding?: (finding: UsageFinding) => void;
}

export interface AuditScopeOptions {
  readonly scopes?: readonly RetirementScope[];
  /** Their listing sources are audited too. */
  readonly campaigns?: readonly string[];
  readonly includeVersions?: boolean;
  /** Destination of the audit's ReEncrypt probes; the key itself while it is enabled. */
  readonly probeKey?: string;
  /** The operator's justification, kept with the step. */
  readonly reason?: string;
}

export interface ScheduleOptions extends AuditScopeOptions {
  /** How long the key must have been disabled by rekey, in ms. */
  readonly observeMs: number;
  readonly pendingDays: number;
}

export interface StepResult {
  readonly key: KeyFacts;
  readonly step: RetirementStep;
  /** What the operator should know but that does not block the step. */
  readonly warnings: readonly string[];
}

/** KMS states of a key whose deletion CancelKeyDeletion can still stop. */
const PENDING_STATES: ReadonlySet<string> = new Set(['PendingDeletion', 'PendingReplicaDeletion']);

/** `rekey retire KEY`: audits the scopes, and disables the key only when nothing remains under it. */
export async function retireKey(deps: RetirementDeps, key: string, options: AuditScopeOptions): Promise<StepResult> {
  const facts = await retirable(deps, key);
  /* Precondition: a key pending deletion is past this step; cancelling is the way back. */
  if (PENDING_STATES.has(facts.state)) {
    throw await refuse(deps, facts, 'key-state', `${facts.arn} is ${facts.state}; run rekey retire ${key} --cancel to stop the deletion first`);
  }
  await refuseWhileCampaignsUse(deps, facts);
  const scope = await scopeOf(deps, options);
  const proof = await proveUnused(deps, facts, scope, options.probeKey);
  await disableKey(deps.kmsClient, facts.keyId);
  const step = await stepOf(deps, 'disabled', options, { proof });
  await deps.store.record({ ...identity(facts), state: 'disabled', step, scopes: scope.scopes, includeVersions: scope.includeVersions });
  deps.trail.key('disabled', facts.arn, stepDetail(step));
  return { key: facts, step, warnings: warningsFor(facts) };
}

/** `rekey retire KEY --schedule-deletion`: after the observation period, audits again and schedules the deletion. */
export async function scheduleDeletion(deps: RetirementDeps, key: string, options: ScheduleOptions): Promise<StepResult> {
  const facts = await retirable(deps, key);
  const retirement = await deps.store.get(facts.arn);
  /* Precondition: only a key rekey disabled after an audit, and still disabled, goes on to deletion. */
  if (retirement?.state !== 'disabled') {
    const why = retirement?.state === 'pending-deletion' ? `is already pending deletion (on ${iso(retirement.deletionDate)})` : 'was not disabled by rekey retire';
    throw await refuse(deps, facts, 'not-retiring', `${facts.arn} ${why}; rekey schedules the deletion of a key it disabled itself: run rekey retire ${key} first`);
  }
  if (facts.state !== 'Disabled') {
    throw await refuse(
      deps,
      facts,
      'key-state',
      `${facts.arn} is ${facts.state} in KMS although rekey disabled it on ${iso(retirement.disabledAt)}: it was changed outside rekey; run rekey retire ${key} again, which audits it and starts the observation period over`,
    );
  }
  const now = await deps.clock.now();
  const observedMs = now - retirement.disabledAt;
  /* Precondition: the key stayed disabled for the whole observation period, so whatever still needed it has failed loudly. */
  if (observedMs < options.observeMs) {
    throw await refuse(
      deps,
      facts,
      'observation-period',
      `${facts.arn} was disabled on ${iso(retirement.disabledAt)}; the observation period ends on ${iso(retirement.disabledAt + options.observeMs)}`,
    );
  }
  const replicas = facts.multiRegion?.type === 'PRIMARY' ? facts.multiRegion.replicaArns : [];
  /* Precondition: no copy of the key material outlives the deletion unnoticed; KMS would only hold a primary with replicas pending. */
  if (replicas.length > 0) {
    throw await refuse(deps, facts, 'replicas-remain', `${facts.arn} is a multi-Region primary key with replicas ${replicas.join(', ')}: retire and delete each replica in its Region first (AWS_REGION=… rekey retire …)`);
  }
  if (options.probeKey === undefined) {
    throw new ConfigError(`${facts.arn} is disabled, so it cannot receive the audit's ReEncrypt probes: name an enabled key you may ReEncryptTo with --probe-key`);
  }
  await refuseWhileCampaignsUse(deps, facts);
  const scope = await scopeOf(deps, { ...options, scopes: [...retirement.scopes, ...(options.scopes ?? [])], includeVersions: retirement.includeVersions || options.includeVersions });
  const proof = await proveUnused(deps, facts, scope, options.probeKey);
  const deletionDate = await scheduleKeyDeletion(deps.kmsClient, facts.keyId, options.pendingDays);
  const step = await stepOf(deps, 'deletion-scheduled', options, { proof, observedMs, pendingDays: options.pendingDays, deletionDate: deletionDate.getTime() });
  await deps.store.record({ ...identity(facts), state: 'pending-deletion', step });
  deps.trail.key('deletion-scheduled', facts.arn, stepDetail(step));
  return { key: { ...facts, deletionDate }, step, warnings: warningsFor(facts) };
}

/** `rekey retire KEY --cancel`: stops a pending deletion and enables the key again. */
export async function cancelRetirement(deps: RetirementDeps, key: string, options: Pick<AuditScopeOptions, 'reason'>): Promise<StepResult> {
  const facts = await retirable(deps, key);
  const pending = PENDING_STATES.has(facts.state);
  /* Precondition: there is a deletion to stop or a disabled key to enable. */
  if (!pending && facts.state !== 'Disabled') {
    throw await refuse(deps, facts, 'not-retiring', `${facts.arn} is ${facts.state}: there is no deletion to cancel and nothing to enable`);
  }
  if (pending) await cancelKeyDeletion(deps.kmsClient, facts.keyId);
  await enableKey(deps.kmsClient, facts.keyId);
  const step = await stepOf(deps, pending ? 'deletion-cancelled' : 'enabled', options, {});
  await deps.store.record({ ...identity(facts), state: 'cancelled', step });
  deps.trail.key(step.step === 'enabled' ? 'enabled' : 'deletion-cancelled', facts.arn, stepDetail(step));
  return { key: { ...facts, state: 'Enabled', deletionDate: undefined }, step, warnings: [] };
}

/** Keys in retirement (and those rekey took out of it), with what KMS says of each now. */
export async function listRetirements(deps: Pick<RetirementDeps, 'store' | 'kmsClient'>): Promise<{ readonly retirement: Retirement; readonly kmsState: string }[]> {
  const all = await deps.store.list();
  return Promise.all(
    all.map(async (retirement) => {
      const kmsState = await describeKey(deps.kmsClient, retirement.keyArn).then(
        (f) => f.state,
        (err: unknown) => `unknown (${err instanceof Error ? err.message : String(err)})`,
      );
      return { retirement, kmsState };
    }),
  );
}

async function retirable(deps: RetirementDeps, key: string): Promise<KeyFacts> {
  const facts = await describeKey(deps.kmsClient, key);
  /* Precondition: AWS owns its managed keys; nobody may disable or delete one. */
  if (isAwsManaged(facts)) {
    throw await refuse(deps, facts, 'aws-managed-key', `${key} (${facts.arn}) is an AWS managed key: AWS rotates and retires it; only customer managed keys can be retired`);
  }
  return facts;
}

interface Scope {
  readonly scopes: readonly RetirementScope[];
  readonly campaigns: readonly string[];
  readonly includeVersions: boolean;
}

/** The scopes given and those of the campaigns named, once each. */
async function scopeOf(deps: RetirementDeps, options: AuditScopeOptions): Promise<Scope> {
  const scopes = [...(options.scopes ?? [])];
  let includeVersions = options.includeVersions === true;
  for (const id of options.campaigns ?? []) {
    if (!(await deps.campaigns.exists(id))) throw new ConfigError(`no campaign ${id}: run rekey status to list campaigns`);
    const spec = await deps.campaigns.spec(id);
    for (const source of spec.sources) {
      if (source.kind !== 'listing') {
        throw new ConfigError(`campaign ${id} names its objects by ${source.kind} (${source.uri}): say which buckets to audit with --bucket and --prefix`);
      }
      scopes.push({ bucket: source.bucket, prefix: source.prefix });
    }
    includeVersions ||= spec.includeVersions === true;
  }
  const unique = [...new Map(scopes.map((s) => [`${s.bucket}/${s.prefix}`, s])).values()];
  /* Precondition: a retirement proves something about named data; an empty scope proves nothing. */
  if (unique.length === 0) throw new ConfigError('say what to audit: --bucket B [--prefix P] or --campaign ID');
  // A noncurrent version under the key is lost with the key like any object: a versioned bucket is always audited with its versions.
  for (const bucket of new Set(unique.map((s) => s.bucket))) includeVersions ||= await mayHoldVersions(deps.s3, bucket);
  return { scopes: unique, campaigns: options.campaigns ?? [], includeVersions };
}

/** Audits every scope and refuses unless nothing is under the key and every entry was told apart. */
async function proveUnused(deps: RetirementDeps, facts: KeyFacts, scope: Scope, probeKey: string | undefined): Promise<RetirementProof> {
  const probeKeyArn = probeKey === undefined ? facts.arn : (await describeKey(deps.kmsClient, probeKey)).arn;
  if (probeKeyArn === facts.arn && facts.state !== 'Enabled') {
    throw new ConfigError(`${facts.arn} is ${facts.state}, so it cannot receive the audit's ReEncrypt probes: name an enabled key you may ReEncryptTo with --probe-key`);
  }
  const totals = { objects: 0, noncurrentVersions: 0, instructionFiles: 0, remaining: 0, unreadable: 0, kmsProbes: 0 };
  const refused: UsageFinding[] = [];
  for (const { bucket, prefix } of scope.scopes) {
    const summary = await scanKeyUsage({ s3: deps.s3, kms: deps.kms }, { bucket, prefix, keyArn: facts.arn, probeKeyId: probeKeyArn, includeVersions: scope.includeVersions }, (finding) => {
      // KMS refusing a wrapped key because this key is disabled names the key: the entry is under it.
      const underDisabledKey = finding.reason === 'kms-disabled' && retiringKeyNamedIn([finding.message], [{ keyArn: facts.arn, keyId: facts.keyId }]) !== undefined;
      const shown: UsageFinding = underDisabledKey ? { ...finding, status: 'under-key', keyId: facts.arn } : finding;
      if (underDisabledKey) refused.push(finding);
      deps.onFinding?.(shown);
    });
    totals.objects += summary.scanned.objects;
    totals.noncurrentVersions += summary.scanned.noncurrentVersions;
    totals.instructionFiles += summary.scanned.instructionFiles;
    totals.remaining += summary.underKey.total;
    totals.unreadable += summary.unreadable.total;
    totals.kmsProbes += summary.kmsProbes;
  }
  await deps.refusals.noteFindings(refused, 'retire-audit');
  const proof: RetirementProof = {
    scopes: scope.scopes,
    includeVersions: scope.includeVersions,
    campaigns: scope.campaigns,
    scanned: { objects: totals.objects, noncurrentVersions: totals.noncurrentVersions, instructionFiles: totals.instructionFiles },
    remaining: totals.remaining + refused.length,
    unreadable: totals.unreadable - refused.length,
    kmsProbes: totals.kmsProbes,
    probeKeyArn,
  };
  if (proof.remaining > 0) {
    throw await refuse(deps, facts, 'key-in-use', `${proof.remaining} objects, versions or instruction files are still under ${facts.arn} (listed)`, proof);
  }
  if (proof.unreadable > 0) {
    throw await refuse(deps, facts, 'key-use-unproven', `none found under ${facts.arn}, but ${proof.unreadable} entries could not be read (listed), so the key's absence is not proven`, proof);
  }
  return proof;
}

/** Campaigns not finished that move data to or from the key would fail on a disabled key. */
async function refuseWhileCampaignsUse(deps: RetirementDeps, facts: KeyFacts): Promise<void> {
  for (const id of await deps.campaigns.list()) {
    const state = await deps.campaigns.state(id);
    if (isFinished(state)) continue;
    const spec = await deps.campaigns.spec(id);
    if (spec.targetKeyArn === facts.arn || spec.sourceKeyArns.includes(facts.arn)) {
      throw await refuse(deps, facts, 'campaign-uses-key', `campaign ${id} (${state}) still moves data ${spec.targetKeyArn === facts.arn ? 'to' : 'from'} ${facts.arn}: let it finish, or cancel it`);
    }
  }
}

async function refuse(deps: RetirementDeps, facts: KeyFacts, reason: RetireRefusal, message: string, proof?: RetirementProof): Promise<RetirementRefused> {
  deps.trail.key('retire-refused', facts.arn, { refusal: reason, message, keyState: facts.state, ...(proof ? { proof } : {}) });
  await deps.trail.flush();
  return new RetirementRefused(reason, message, proof);
}

async function stepOf(deps: RetirementDeps, step: RetirementStepKind, options: Pick<AuditScopeOptions, 'reason'>, rest: Partial<RetirementStep>): Promise<RetirementStep> {
  return { step, at: await deps.clock.now(), clock: deps.clock.name, operator: deps.actor, reason: options.reason, ...rest };
}

function identity(facts: KeyFacts): { keyArn: string; keyId: string; aliases: readonly string[] } {
  return { keyArn: facts.arn, keyId: facts.keyId, aliases: facts.aliases };
}

function stepDetail(step: RetirementStep): Record<string, unknown> {
  const { operator: _operator, ...rest } = step;
  return { ...rest, ...(step.deletionDate !== undefined ? { deletionDate: iso(step.deletionDate) } : {}) };
}

/** What the operator must know: the same key material elsewhere, and names that still point at the key. */
function warningsFor(facts: KeyFacts): string[] {
  const warnings: string[] = [];
  const mr = facts.multiRegion;
  if (mr) {
    const others = [...(mr.primaryArn && mr.primaryArn !== facts.arn ? [mr.primaryArn] : []), ...mr.replicaArns.filter((a) => a !== facts.arn)];
    if (others.length > 0) warnings.push(`multi-Region key: the same key material still decrypts in ${others.join(', ')}; retire each of them in its Region`);
  }
  if (facts.aliases.length > 0) warnings.push(`aliases still point at the key: ${facts.aliases.join(', ')}; callers using them now get DisabledException`);
  return warnings;
}

export function iso(ms: number | undefined): string {
  return ms === undefined ? 'never' : new Date(ms).toISOString();
}
