import { hostname, userInfo } from 'node:os';
import { pino, type Logger } from 'pino';
import type { CampaignSpec, CampaignState, Verification } from '../campaign/spec.js';
import { makeKmsClient } from '../config/clients.js';
import type { Config } from '../config/config.js';
import type { ObjectOutcome } from '../rotate/outcome.js';

/**
 * The audit trail, for a SIEM in the spirit of CloudTrail: who started or changed which campaign with
 * which keys, and every object's outcome with its old and new key ids. JSON lines, one event each;
 * key ids, ETags and reason codes only, never key material or content.
 */
export interface AuditTrail {
  campaign(event: 'created' | 'paused' | 'resumed' | 'cancelled' | 'retried', id: string, spec?: CampaignSpec): void;
  /** A schedule made (with what each of its runs will rotate) or removed; each run is then a campaign of its own. */
  schedule(event: 'created' | 'removed', id: string, detail?: ScheduleDetail): void;
  object(campaign: string, outcome: ObjectOutcome): void;
  /** The closing verification of a campaign: what remains under its source keys, per key and kind. */
  verified(campaign: string, state: CampaignState, verification: Verification): void;
  /** A step of a key's retirement with the proof behind it, a refused step, or a refusal KMS gave rekey for a retiring key. */
  key(event: KeyEvent, keyArn: string, detail: Readonly<Record<string, unknown>>): void;
  flush(): Promise<void>;
}

export type KeyEvent = 'disabled' | 'deletion-scheduled' | 'deletion-cancelled' | 'enabled' | 'retire-refused' | 'refusal';

export interface ScheduleDetail {
  readonly spec: CampaignSpec;
  readonly everyMs: number;
  readonly minAgeMs: number;
}

export interface Actor {
  readonly user: string;
  readonly host: string;
  readonly pid: number;
  /** The AWS access key id of the credentials in use: an identifier CloudTrail records too, not a secret. */
  readonly accessKeyId: string | undefined;
}

export function currentActor(accessKeyId?: string): Actor {
  return { user: userInfo().username, host: hostname(), pid: process.pid, accessKeyId };
}

const noTrail: AuditTrail = {
  campaign() {},
  schedule() {},
  object() {},
  verified() {},
  key() {},
  async flush() {},
};

/** An audit trail appended to `destination` (a file, or `-` for stderr); none when it is undefined. */
export function openAuditTrail(destination: string | undefined, actor: Actor): AuditTrail {
  if (destination === undefined || destination === '') return noTrail;
  const stream = pino.destination(destination === '-' ? { dest: 2, sync: true } : { dest: destination, append: true, mkdir: true, sync: true });
  const log: Logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'event', formatters: { level: (label) => ({ level: label }) } }, stream);
  return {
    campaign(event, id, spec) {
      log.info({ campaign: id, actor, ...(spec ? specFields(spec) : {}) }, `campaign.${event}`);
    },
    schedule(event, id, detail) {
      log.info(
        { schedule: id, actor, ...(detail ? { everyMs: detail.everyMs, minAgeMs: detail.minAgeMs, ...specFields(detail.spec) } : {}) },
        `schedule.${event}`,
      );
    },
    verified(campaign, state, v) {
      log.info(
        { campaign, actor, state, sourceKeys: v.sourceKeys, scanned: v.scanned, remaining: v.remaining, unreadable: v.unreadable, byKind: v.byKind, byKey: v.byKey },
        'campaign.verified',
      );
    },
    object(campaign, o) {
      log.info(
        {
          campaign,
          actor: { host: actor.host, pid: actor.pid },
          bucket: o.ref.bucket,
          key: o.ref.key,
          versionId: o.ref.versionId,
          mode: o.mode,
          outcome: o.outcome,
          reason: o.reason,
          oldKeyId: o.oldKeyId,
          newKeyId: o.newKeyId,
          format: o.format,
          newFormat: o.newFormat,
          oldEtag: o.oldEtag,
          newEtag: o.newEtag,
          oldVersionId: o.oldVersionId,
          newVersionId: o.newVersionId,
          sourceAuthenticated: o.sourceAuthenticated,
        },
        `object.${o.outcome}`,
      );
    },
    key(event, keyArn, detail) {
      log.info({ keyArn, actor, ...detail }, `key.${event}`);
    },
    flush: () => new Promise<void>((resolve) => stream.flush(() => resolve())),
  };
}

/** What a campaign or schedule rotates, with which keys: ids and ARNs only. */
function specFields(spec: CampaignSpec) {
  return {
    name: spec.name,
    mode: spec.mode,
    targetKey: spec.targetKey,
    targetKeyArn: spec.targetKeyArn,
    sourceKeyArns: spec.sourceKeyArns,
    targetFormat: spec.targetFormat,
    priority: spec.priority,
    sources: spec.sources,
    ...(spec.schedule ? { schedule: spec.schedule.id } : {}),
  };
}

/** Opens the configured audit trail, naming the OS user, host and AWS access key id in use. */
export async function openConfiguredAuditTrail(config: Config): Promise<AuditTrail> {
  if (!config.auditLog) return noTrail;
  return openAuditTrail(config.auditLog, await configuredActor(config));
}

/** The OS user, host and the AWS access key id of the configured credentials. */
export async function configuredActor(config: Config): Promise<Actor> {
  const kms = makeKmsClient(config);
  try {
    const credentials = await kms.config.credentials().catch(() => undefined);
    return currentActor(credentials?.accessKeyId);
  } finally {
    kms.destroy();
  }
}

/** Appends one event to the configured audit trail, for the CLI's one-shot commands. */
export async function recordInAuditTrail(config: Config, record: (trail: AuditTrail) => void): Promise<void> {
  const trail = await openConfiguredAuditTrail(config);
  record(trail);
  await trail.flush();
}
