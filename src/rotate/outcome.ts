import { reasonOf, RekeyError, type ReasonCode } from '../errors.js';
import { outOfBudget } from '../retry/budget.js';

export type Mode = 'rewrap' | 'rekey';
export const MODES: readonly Mode[] = ['rewrap', 'rekey'];

export type TargetFormat = 'same' | 'v2' | 'v3';
export const TARGET_FORMATS: readonly TargetFormat[] = ['same', 'v2', 'v3'];

export interface ObjectRef {
  readonly bucket: string;
  readonly key: string;
  /** Set for noncurrent versions; the current version otherwise. */
  readonly versionId?: string | undefined;
}

export type OutcomeKind = 'rotated' | 'skipped' | 'failed';

/** One object's result: everything a report or an auditor needs, never a secret. */
export interface ObjectOutcome {
  readonly ref: ObjectRef;
  readonly mode: Mode;
  readonly outcome: OutcomeKind;
  readonly reason: ReasonCode | undefined;
  readonly message: string;
  /** A failure another attempt may cure (throttling, a 5xx); the campaign retries these. */
  readonly retryable: boolean;
  readonly format: string | undefined;
  readonly newFormat: string | undefined;
  readonly oldKeyId: string | undefined;
  readonly newKeyId: string | undefined;
  /** The object's ETags; an envelope kept in an instruction file has the file's ETags apart. */
  readonly oldEtag: string | undefined;
  readonly newEtag: string | undefined;
  readonly instructionFileOldEtag?: string | undefined;
  readonly instructionFileNewEtag?: string | undefined;
  /** The HTTP status and service error code of the call that failed, when a call failed. */
  readonly httpStatus?: number | undefined;
  readonly errorCode?: string | undefined;
  readonly oldVersionId: string | undefined;
  readonly newVersionId: string | undefined;
  /**
   * rekey only: true when the old content was verified by an authenticated cipher (GCM tag, V3 key
   * commitment), false for legacy AES/CBC, which only padding and lengths check; undefined when the
   * body was not decrypted (rewrap, or an object left before).
   */
  readonly sourceAuthenticated: boolean | undefined;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly durationMs: number;
  /** Versions the rotation replaced and then deleted (`--purge-replaced-versions`). */
  readonly purgedVersions?: readonly VersionRef[];
}

/** One exact version of an S3 object: the object itself or its instruction file. */
export interface VersionRef {
  readonly key: string;
  readonly versionId: string;
}

/** Reasons that mean the object is fine as it is, or another writer owns it now: not failures. */
const SKIP_REASONS: ReadonlySet<ReasonCode> = new Set<ReasonCode>([
  'already-rotated',
  'changed',
  'gone',
  'object-locked',
  'source-key-mismatch',
  'noncurrent-version',
  'instruction-file',
  'orphan-instruction-file',
  'orphan-removed',
  'not-encrypted',
  'unauthenticated-source',
  'cancelled',
]);

const RETRYABLE_REASONS: ReadonlySet<ReasonCode> = new Set<ReasonCode>(['kms-throttled', 'kms-error', 's3-error']);

export function kindOf(reason: ReasonCode): OutcomeKind {
  return SKIP_REASONS.has(reason) ? 'skipped' : 'failed';
}

export function isRetryable(reason: ReasonCode): boolean {
  return RETRYABLE_REASONS.has(reason);
}

/** What is known of an object so far; the outcome builders fill the rest. */
export type OutcomeFacts = Partial<Omit<ObjectOutcome, 'ref' | 'mode' | 'outcome' | 'reason' | 'message' | 'retryable'>>;

const EMPTY_FACTS = {
  format: undefined,
  newFormat: undefined,
  oldKeyId: undefined,
  newKeyId: undefined,
  oldEtag: undefined,
  newEtag: undefined,
  oldVersionId: undefined,
  newVersionId: undefined,
  sourceAuthenticated: undefined,
  bytesRead: 0,
  bytesWritten: 0,
  durationMs: 0,
} as const;

export function rotated(ref: ObjectRef, mode: Mode, facts: OutcomeFacts, message = 'rotated'): ObjectOutcome {
  return { ...EMPTY_FACTS, ...facts, ref, mode, outcome: 'rotated', reason: undefined, message, retryable: false };
}

export function notRotated(ref: ObjectRef, mode: Mode, reason: ReasonCode, message: string, facts: OutcomeFacts = {}): ObjectOutcome {
  return { ...EMPTY_FACTS, ...facts, ref, mode, outcome: kindOf(reason), reason, message, retryable: isRetryable(reason) };
}

/**
 * Any error becomes an outcome; an unexpected one is `failed:internal`, never a crash of the campaign.
 * A transient failure the object's retry budget ran out for is final: attempts never stack up.
 */
export function fromError(ref: ObjectRef, mode: Mode, err: unknown, facts: OutcomeFacts = {}): ObjectOutcome {
  const reason = reasonOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const call = err instanceof RekeyError && err.httpStatus !== undefined ? { httpStatus: err.httpStatus, errorCode: err.errorCode } : {};
  const known = { ...facts, ...call };
  if (!outOfBudget(err)) return notRotated(ref, mode, reason, message, known);
  return { ...notRotated(ref, mode, reason, `${message} (retry budget spent)`, known), retryable: false };
}

/**
 * Told each object's outcome as soon as it is settled, before the rest of its batch: the caller can
 * record it at once, so a worker killed mid-batch loses no finished object's facts.
 */
export type OutcomeSink = (outcome: ObjectOutcome) => Promise<void>;

/**
 * Asked before each object starts: true once the campaign was cancelled, so a batch in flight stops
 * at the next object boundary (an object under way finishes, its write is never cut in half).
 */
export type StopCheck = () => Promise<boolean>;

/** The outcome of an object a cancelled campaign never started. */
export function cancelledBeforeStart(ref: ObjectRef, mode: Mode): ObjectOutcome {
  return notRotated(ref, mode, 'cancelled', 'the campaign was cancelled before this object started');
}
