import type { S3Client } from '@aws-sdk/client-s3';
import type { ReasonCode } from '../errors.js';
import { s3Failure } from './errors.js';

export interface S3CallEvent {
  /** The API name, e.g. `HeadObject`. */
  readonly operation: string;
  readonly result: 'ok' | ReasonCode;
  /** Attempts beyond the first that the SDK's retry made. */
  readonly retries: number;
}

export interface S3Observer {
  onCall(event: S3CallEvent): void;
}

/** Counts every S3 request the client sends, by operation and result, with the SDK's retries. */
export function observeS3(s3: S3Client, observer: S3Observer): void {
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      try {
        const out = await next(args);
        const attempts = (out.output as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1;
        observer.onCall({ operation, result: 'ok', retries: attempts - 1 });
        return out;
      } catch (err) {
        const attempts = (err as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1;
        observer.onCall({ operation, result: s3Failure(err, operation).reason, retries: attempts - 1 });
        throw err;
      }
    },
    { step: 'initialize', name: 'rekeyObserveS3' },
  );
}
