import type { RequestMatcher } from './kms-fault-proxy.js';

/**
 * S3 REST operations as they cross the fault proxy (path-style requests of the AWS SDK v3), so rules
 * can pick one operation: the SDK sends no operation name for S3, only a method and a query.
 */
export type S3Operation =
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'CopyObject'
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'ListObjectsV2'
  | 'GetObjectTagging';

function query(path: string): URLSearchParams {
  return new URL(path, 'http://proxy').searchParams;
}

/** Names the S3 operation of a request, or undefined for anything rekey does not send. */
export function s3OperationOf(request: Parameters<RequestMatcher>[0]): S3Operation | undefined {
  const q = query(request.path);
  switch (request.method) {
    case 'POST':
      if (q.has('uploads')) return 'CreateMultipartUpload';
      return q.has('uploadId') ? 'CompleteMultipartUpload' : undefined;
    case 'PUT':
      if (q.has('uploadId')) return 'UploadPart';
      if (request.headers['x-amz-copy-source'] !== undefined) return 'CopyObject';
      return q.has('tagging') ? undefined : 'PutObject';
    case 'GET':
      if (q.has('tagging')) return 'GetObjectTagging';
      if (q.get('list-type') === '2') return 'ListObjectsV2';
      return q.has('uploads') ? undefined : 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    case 'DELETE':
      return q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    default:
      return undefined;
  }
}

export function s3Operation(...operations: S3Operation[]): RequestMatcher {
  const wanted = new Set(operations);
  return (request) => {
    const op = s3OperationOf(request);
    return op !== undefined && wanted.has(op);
  };
}

/** The object key a path-style request is about, decoded. */
export function s3KeyOf(path: string): string {
  const pathname = new URL(path, 'http://proxy').pathname;
  return decodeURIComponent(pathname.split('/').slice(2).join('/'));
}
