import { RekeyError } from '../errors.js';
import { MAX_USER_METADATA_BYTES } from './metadata-limit.js';

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/**
 * Maps an S3 SDK error to a reason code. A failed precondition means another writer changed the
 * object after rekey read it: that writer wins and the object is reported `changed`.
 */
export function s3Failure(err: unknown, what: string): RekeyError {
  if (err instanceof RekeyError) return err;
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const code = e.name ?? e.Code ?? 'Error';
  const message = `${what}: ${code}${status ? ` (HTTP ${status})` : ''}`;
  const call = { cause: err, httpStatus: status, errorCode: code };
  // The upload, not the object, is gone: aborted under the writer (a job taken over by a second worker,
  // a lifecycle rule). The object is still there, and another attempt may rotate it.
  if (UPLOAD_GONE.has(code)) {
    return new RekeyError('s3-error', `${message}${ABORTED_MEANWHILE}`, call);
  }
  if (code === 'MetadataTooLarge') {
    return new RekeyError('metadata-too-large', `${message}: the user metadata passes S3's ${MAX_USER_METADATA_BYTES}-byte limit`, call);
  }
  if (status === 412 || code === 'PreconditionFailed') {
    return new RekeyError('changed', `${message}: the object changed since it was read`, call);
  }
  // S3 answers 409 ConditionalRequestConflict while a conflicting conditional write is in progress
  // and asks for a retry: the condition was not evaluated, so nothing says the object changed.
  if (status === 409 || code === 'ConditionalRequestConflict') {
    return new RekeyError('s3-error', `${message}: a concurrent conditional write was in progress`, { cause: err });
  }
  if (status === 404 || code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchVersion') {
    return new RekeyError('gone', `${message}: the object no longer exists`, call);
  }
  // GET (InvalidObjectState) and CopyObject (ObjectNotInActiveTierError) of an object in an archive
  // storage class (Glacier Flexible Retrieval, Deep Archive, an Intelligent-Tiering archive tier) until
  // it is restored: no permission cures it.
  if (code === 'InvalidObjectState' || code === 'ObjectNotInActiveTierError') {
    return new RekeyError('archived', `${message}: the object is archived; restore it (RestoreObject), then rekey retry`, call);
  }
  if (status === 403 || code === 'AccessDenied') {
    return new RekeyError('s3-denied', `${message}: access denied; grant the permission (README, configuration) and rekey retry`, call);
  }
  // Throttling (503 SlowDown, 429), server errors and a request that got no answer (reset, timeout).
  if (status === undefined || status >= 500 || status === 429 || THROTTLING_CODES.has(code)) {
    return new RekeyError('s3-error', message, call);
  }
  return new RekeyError('s3-rejected', `${message}: S3 refused the request`, call);
}

const ABORTED_MEANWHILE = ': the multipart upload was aborted meanwhile';

/**
 * A transient failure of a multipart upload whose abort then found the upload already gone: whatever
 * the request saw (a server that refuses a part of an aborted upload before reading its body resets
 * the connection, and the SDK retries that reset until the object's retry budget is spent), the upload
 * was aborted under the writer, and a later attempt of the object may rotate it. The refused retries
 * are not kept as a cause: they are not what ended this attempt. Any other failure is returned as it was.
 */
export function abortedMeanwhile(err: unknown, what: string): unknown {
  const failure = s3Failure(err, what);
  if (failure.reason !== 's3-error' || UPLOAD_GONE.has(failure.errorCode ?? '')) return err;
  return new RekeyError('s3-error', `${failure.message}${ABORTED_MEANWHILE}`, { httpStatus: failure.httpStatus, errorCode: failure.errorCode });
}

/**
 * The multipart upload, or a part of it, is gone: S3 answers NoSuchUpload; an emulator may instead
 * take a part for an aborted upload and then refuse the completion with InvalidPart.
 */
const UPLOAD_GONE = new Set(['NoSuchUpload', 'InvalidPart']);

const THROTTLING_CODES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeTooSkewed']);

/**
 * Whether the same request may succeed when sent again: the SDK's retries of S3 requests ask this.
 * An upload that is gone is transient for the object (another attempt starts a new upload), not the request.
 */
export function isTransientS3Error(err: unknown): boolean {
  return !UPLOAD_GONE.has((err as SdkError | undefined)?.name ?? '') && s3Failure(err, 'request').reason === 's3-error';
}
