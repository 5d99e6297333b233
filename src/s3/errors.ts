import { RekeyError } from '../errors.js';

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
  if (code === 'NoSuchUpload') {
    return new RekeyError('s3-error', `${message}: the multipart upload was aborted meanwhile`, call);
  }
  if (status === 412 || code === 'PreconditionFailed' || code === 'ConditionalRequestConflict' || status === 409) {
    return new RekeyError('changed', `${message}: the object changed since it was read`, call);
  }
  if (status === 404 || code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchVersion') {
    return new RekeyError('gone', `${message}: the object no longer exists`, call);
  }
  if (status === 403 || code === 'AccessDenied') {
    return new RekeyError('s3-error', `${message}: access denied`, call);
  }
  return new RekeyError('s3-error', message, call);
}
