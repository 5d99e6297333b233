import {
  CancelKeyDeletionCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  paginateListAliases,
  ScheduleKeyDeletionCommand,
  type KMSClient,
  type KeyMetadata,
} from '@aws-sdk/client-kms';
import { ConfigError } from '../errors.js';
import { classifyKmsError, type KmsOperation } from './errors.js';

/**
 * The calls that move a KMS key through its retirement: disable (reversible), schedule deletion
 * (reversible until the pending window ends), cancel. Mutating calls name the key by its key id, which
 * every KMS (and every emulator) accepts; facts are reported by ARN, as KMS names keys in responses.
 */

/** Where a multi-Region key's other copies live: the same key material decrypts in each of them. */
export interface MultiRegionFacts {
  readonly type: 'PRIMARY' | 'REPLICA';
  readonly primaryArn: string | undefined;
  readonly replicaArns: readonly string[];
}

export interface KeyFacts {
  readonly arn: string;
  readonly keyId: string;
  /** `Enabled`, `Disabled`, `PendingDeletion`, `PendingReplicaDeletion`, … as KMS says. */
  readonly state: string;
  /** `CUSTOMER`, or `AWS` for an AWS managed key, which nobody may disable or delete. */
  readonly manager: string;
  readonly aliases: readonly string[];
  readonly multiRegion: MultiRegionFacts | undefined;
  /** Set while the key is pending deletion. */
  readonly deletionDate: Date | undefined;
}

/** AWS reserves this alias prefix for its managed keys; no customer can create such an alias. */
const AWS_MANAGED_ALIAS = /^alias\/aws\//;

export function isAwsManaged(facts: KeyFacts): boolean {
  return facts.manager === 'AWS' || facts.aliases.some((alias) => AWS_MANAGED_ALIAS.test(alias));
}

async function send<T>(operation: KmsOperation, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw classifyKmsError(err, operation);
  }
}

/** DescribeKey and the key's aliases; a key id, alias name, alias ARN or key ARN may name the key. */
export async function describeKey(kms: KMSClient, key: string): Promise<KeyFacts> {
  let meta: KeyMetadata | undefined;
  try {
    meta = (await kms.send(new DescribeKeyCommand({ KeyId: key }))).KeyMetadata;
  } catch (err) {
    const e = classifyKmsError(err, 'DescribeKey');
    if (e.code === 'NotFoundException') throw new ConfigError(`KMS key ${key}: ${e.message}`);
    throw e;
  }
  if (!meta?.Arn || !meta.KeyId) throw new ConfigError(`KMS key ${key}: DescribeKey returned no key ARN`);
  const aliases: string[] = [];
  const keyId = meta.KeyId;
  await send('ListAliases', async () => {
    for await (const page of paginateListAliases({ client: kms }, { KeyId: keyId })) {
      for (const alias of page.Aliases ?? []) if (alias.AliasName && (alias.TargetKeyId === undefined || alias.TargetKeyId === keyId)) aliases.push(alias.AliasName);
    }
  });
  // An alias the user named is the key's even if ListAliases with KeyId is not filtered by the KMS at hand.
  if (key.startsWith('alias/') && !aliases.includes(key)) aliases.push(key);
  const mr = meta.MultiRegion ? meta.MultiRegionConfiguration : undefined;
  return {
    arn: meta.Arn,
    keyId,
    state: meta.KeyState ?? 'Unknown',
    manager: meta.KeyManager ?? 'CUSTOMER',
    aliases: aliases.sort(),
    multiRegion: mr?.MultiRegionKeyType
      ? {
          type: mr.MultiRegionKeyType === 'PRIMARY' ? 'PRIMARY' : 'REPLICA',
          primaryArn: mr.PrimaryKey?.Arn,
          replicaArns: (mr.ReplicaKeys ?? []).flatMap((r) => (r.Arn ? [r.Arn] : [])),
        }
      : undefined,
    deletionDate: meta.DeletionDate,
  };
}

export async function disableKey(kms: KMSClient, keyId: string): Promise<void> {
  await send('DisableKey', () => kms.send(new DisableKeyCommand({ KeyId: keyId })));
}

export async function enableKey(kms: KMSClient, keyId: string): Promise<void> {
  await send('EnableKey', () => kms.send(new EnableKeyCommand({ KeyId: keyId })));
}

/** KMS's own bounds of the pending window, in days. */
export const PENDING_WINDOW_DAYS = { min: 7, max: 30 } as const;

/** Returns the date KMS will delete the key on. */
export async function scheduleKeyDeletion(kms: KMSClient, keyId: string, pendingDays: number): Promise<Date> {
  /* Precondition: the window is one KMS accepts; an emulator that accepts less must not shorten it. */
  if (!Number.isInteger(pendingDays) || pendingDays < PENDING_WINDOW_DAYS.min || pendingDays > PENDING_WINDOW_DAYS.max) {
    throw new ConfigError(`the pending window is ${PENDING_WINDOW_DAYS.min} to ${PENDING_WINDOW_DAYS.max} days, not ${pendingDays}`);
  }
  const out = await send('ScheduleKeyDeletion', () => kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: pendingDays })));
  if (!out.DeletionDate) throw new ConfigError(`ScheduleKeyDeletion of ${keyId} returned no deletion date`);
  return out.DeletionDate;
}

export async function cancelKeyDeletion(kms: KMSClient, keyId: string): Promise<void> {
  await send('CancelKeyDeletion', () => kms.send(new CancelKeyDeletionCommand({ KeyId: keyId })));
}
