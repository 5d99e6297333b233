import { NETWORK_CODES, RekeyError, type ReasonCode } from '../errors.js';

export type KmsOperation =
  | 'ReEncrypt'
  | 'GenerateDataKey'
  | 'Decrypt'
  // A key's lifecycle (src/kms/key-lifecycle.ts): `rekey retire` and `rekey keys`.
  | 'DescribeKey'
  | 'ListAliases'
  | 'DisableKey'
  | 'EnableKey'
  | 'ScheduleKeyDeletion'
  | 'CancelKeyDeletion';

export interface KmsErrorInit {
  readonly reason: ReasonCode;
  readonly operation: KmsOperation;
  /** The AWS error code (`InvalidCiphertextException`), the Node network code (`ECONNRESET`) or `Unknown`. */
  readonly code: string;
  readonly retryable: boolean;
  readonly message: string;
  readonly httpStatus?: number | undefined;
  /** KMS request id, for AWS support and CloudTrail; not secret. */
  readonly requestId?: string | undefined;
}

/**
 * A failed KMS call. The SDK error is not kept as `cause`: loggers serialise causes, and what an SDK
 * or a proxy puts in one is not under our control. The fields below are what a report needs.
 */
export class KmsError extends RekeyError {
  readonly operation: KmsOperation;
  readonly code: string;
  readonly retryable: boolean;
  readonly requestId: string | undefined;

  constructor(init: KmsErrorInit) {
    super(init.reason, init.message, { httpStatus: init.httpStatus, errorCode: init.code });
    this.name = 'KmsError';
    this.operation = init.operation;
    this.code = init.code;
    this.retryable = init.retryable;
    this.requestId = init.requestId;
  }
}

interface Rule {
  readonly reason: ReasonCode;
  readonly retryable: boolean;
  readonly explain: string;
}

const throttled: Rule = { reason: 'kms-throttled', retryable: true, explain: 'KMS throttled the request' };
const transient = (explain: string): Rule => ({ reason: 'kms-error', retryable: true, explain });
const wrongKey = (explain: string): Rule => ({ reason: 'wrong-key', retryable: false, explain });
const denied: Rule = { reason: 'kms-denied', retryable: false, explain: 'access to the KMS key was denied' };

/**
 * KMS codes from its model (docs/formats.md §3.1) plus the generic codes the SDK's retryers treat as
 * throttling or transient (aws-sdk-js-v3 service-error-classification), so a proxy or an emulator
 * answering with one of those is handled like AWS.
 */
const RULES_BY_CODE: Readonly<Record<string, Rule>> = {
  ThrottlingException: throttled,
  Throttling: throttled,
  LimitExceededException: throttled,
  TooManyRequestsException: throttled,
  RequestLimitExceeded: throttled,
  RequestThrottled: throttled,
  RequestThrottledException: throttled,
  ThrottledException: throttled,
  SlowDown: throttled,
  KMSInternalException: transient('KMS had an internal error'),
  KeyUnavailableException: transient('the KMS key is temporarily unavailable'),
  DependencyTimeoutException: transient('KMS timed out on a dependency'),
  InternalFailure: transient('KMS had an internal error'),
  ServiceUnavailable: transient('KMS is unavailable'),
  RequestTimeout: transient('the request to KMS timed out'),
  RequestTimeoutException: transient('the request to KMS timed out'),
  TimeoutError: transient('the request to KMS timed out'),
  InvalidCiphertextException: wrongKey(
    'KMS rejected the wrapped key: the encryption context does not match, or the blob is not an intact KMS ciphertext',
  ),
  IncorrectKeyException: wrongKey('the wrapped key was not encrypted under the given source key'),
  NotFoundException: wrongKey('the KMS key does not exist in this account and Region'),
  InvalidKeyUsageException: wrongKey('the KMS key is not a symmetric ENCRYPT_DECRYPT key'),
  DisabledException: { reason: 'kms-disabled', retryable: false, explain: 'the KMS key is disabled' },
  KMSInvalidStateException: {
    reason: 'kms-disabled',
    retryable: false,
    explain: 'the KMS key is not usable in its current state (e.g. pending deletion)',
  },
  AccessDeniedException: denied,
  InvalidGrantTokenException: denied,
  UnrecognizedClientException: denied,
  InvalidSignatureException: denied,
  ExpiredTokenException: denied,
  MissingAuthenticationToken: denied,
};

interface SdkErrorShape {
  readonly name?: unknown;
  readonly code?: unknown;
  readonly message?: unknown;
  readonly $fault?: unknown;
  readonly $retryable?: { readonly throttling?: boolean } | undefined;
  readonly $metadata?: { readonly httpStatusCode?: number; readonly requestId?: string } | undefined;
}

function ruleFor(code: string, err: SdkErrorShape, status: number | undefined, serverMessage: string): Rule {
  const known = RULES_BY_CODE[code];
  if (known) return known;
  if (NETWORK_CODES.has(code)) return transient('the connection to KMS failed');
  if (/not authori[sz]ed/i.test(serverMessage)) return denied;
  if (status === 429 || err.$retryable?.throttling === true) return throttled;
  if ((status !== undefined && status >= 500) || err.$fault === 'server') return transient('KMS answered with a server error');
  return { reason: 'kms-rejected', retryable: false, explain: 'KMS rejected the request' };
}

/** Whether the same KMS request may succeed when sent again: the SDK's retries ask this. */
export function isRetryableKmsError(err: unknown): boolean {
  return classifyKmsError(err, 'Decrypt').retryable;
}

/**
 * Long runs of base64 or hex are what a wrapped key, a data key or a request body echoed by a proxy
 * look like; key ARNs and ids are broken into short runs by `:` and `-`, so they stay readable.
 */
function redact(text: string): string {
  return text
    .replace(/[A-Za-z0-9+/=]{40,}/g, '[redacted]')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' && value.length > 0 ? value : fallback;
}

/** Turns whatever the SDK threw into a KmsError with a stable reason and a redacted one-line message. */
export function classifyKmsError(err: unknown, operation: KmsOperation): KmsError {
  if (err instanceof KmsError) return err;
  const shape: SdkErrorShape = typeof err === 'object' && err !== null ? err : {};
  const status = shape.$metadata?.httpStatusCode;
  // The SDK names socket failures `TimeoutError` and keeps the real cause in `code`.
  const code = stringOr(shape.code, stringOr(shape.name, 'Unknown'));
  const serverMessage = redact(stringOr(shape.message, ''));
  const rule = ruleFor(code, shape, status, serverMessage);
  const detail = serverMessage && serverMessage !== 'UnknownError' ? `: ${serverMessage}` : '';
  return new KmsError({
    reason: rule.reason,
    operation,
    code,
    retryable: rule.retryable,
    message: `${operation}: ${rule.explain} (${code}${status ? `, HTTP ${status}` : ''})${detail}`,
    httpStatus: status,
    requestId: shape.$metadata?.requestId,
  });
}
