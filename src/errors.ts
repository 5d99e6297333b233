/**
 * Every way an object can fail or be skipped has one stable reason code. Reports, metrics labels and
 * the audit log carry the code; the message is for humans and never holds key material or plaintext.
 */
export const REASON_CODES = [
  // format and metadata
  'unknown-format',
  'not-encrypted',
  'mixed-format',
  'bad-metadata',
  'missing-instruction-file',
  'unsupported-algorithm',
  'unauthenticated-source',
  // content
  'tag-mismatch',
  'commitment-mismatch',
  'bad-padding',
  'truncated',
  'too-large',
  // keys
  'wrong-key',
  'kms-denied',
  'kms-disabled',
  'kms-throttled',
  'kms-error',
  'kms-rejected',
  // S3 and the object's state
  'changed',
  'lost-update',
  'gone',
  'object-locked',
  'archived',
  'already-rotated',
  'source-key-mismatch',
  'noncurrent-version',
  'instruction-file',
  'orphan-instruction-file',
  'orphan-removed',
  'metadata-too-large',
  'incomplete-write',
  's3-denied',
  's3-rejected',
  's3-error',
  // run control
  'cancelled',
  'internal',
] as const;

export type ReasonCode = (typeof REASON_CODES)[number];

/** The base of every error rekey raises on purpose: a reason code plus a one-line message. */
export class RekeyError extends Error {
  readonly reason: ReasonCode;
  /** The HTTP status and service error code of the failed call, when a call failed (for reports). */
  readonly httpStatus: number | undefined;
  readonly errorCode: string | undefined;

  constructor(reason: ReasonCode, message: string, options?: { cause?: unknown; httpStatus?: number | undefined; errorCode?: string | undefined }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RekeyError';
    this.reason = reason;
    this.httpStatus = options?.httpStatus;
    this.errorCode = options?.errorCode;
  }
}

/** The object's bytes or metadata are not what the S3 Encryption Client formats allow. */
export class FormatError extends RekeyError {
  constructor(reason: ReasonCode, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
    this.name = 'FormatError';
  }
}

/** Authentication, padding or length checks failed while decrypting content. */
export class CipherError extends RekeyError {
  constructor(reason: ReasonCode, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
    this.name = 'CipherError';
  }
}

/** A flag, environment variable or configuration value is invalid; the CLI exits 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Any thrown value as a RekeyError, the one conversion of the code base: a RekeyError stays as it is,
 * anything else is an unexpected failure that `unexpected` turns into one. The default keeps the
 * message with reason `internal`; a layer with its own policy passes its own (crypto: cipherFailure).
 */
export function asRekeyError(err: unknown, unexpected: (cause: unknown) => RekeyError = internalFailure): RekeyError {
  return err instanceof RekeyError ? err : unexpected(err);
}

function internalFailure(cause: unknown): RekeyError {
  return new RekeyError('internal', cause instanceof Error ? cause.message : String(cause));
}

export function reasonOf(err: unknown): ReasonCode {
  return err instanceof RekeyError ? err.reason : 'internal';
}

/** A campaign's state does not allow what was asked (pause a finished campaign); the CLI exits 5. */
export class StateConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateConflictError';
  }
}

/**
 * A service rekey needs did not answer; the CLI prints this one line and exits 1. `code` is the
 * socket error, so the S3 and KMS classifications still see a transient network failure.
 */
export class UnreachableError extends Error {
  readonly code: string;

  constructor(service: 'Redis' | 'S3' | 'KMS', endpoint: string, code: string, hint: string, options?: { cause?: unknown }) {
    super(`${service} at ${endpoint} is unreachable (${code}): ${hint}`, options);
    this.name = 'UnreachableError';
    this.code = code;
  }
}

/** Node socket errors: the request got no answer at all. */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** The socket error (or the SDK's `TimeoutError`) behind `err` or its cause; undefined for an answered request. */
export function networkCodeOf(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; name?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
    // The SDK's own name for a connection that timed out; a KmsError keeps it as its code.
    if (e.name === 'TimeoutError' || e.code === 'TimeoutError') return 'TimeoutError';
  }
  return undefined;
}
