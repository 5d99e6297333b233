import { GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { makeKmsClient } from '../../src/config/clients.js';
import {
  KmsBatcher,
  type KmsBatcherOptions,
  type KmsBatchEvent,
  type KmsCallEvent,
  type KmsObserver,
  type KmsRetryEvent,
} from '../../src/kms/batcher.js';
import { RedisRateLimiter, type RateLimiter } from '../../src/kms/rate-limiter.js';
import { openStack, uniqueName, type KmsUnderTest, type TestStack } from './stack.js';
import { FaultProxy, kmsOperation, type FaultProxyOptions } from './kms-fault-proxy.js';

export const reEncrypt = kmsOperation('ReEncrypt');

/** Keeps every event, so tests can cross-check the observer against what the proxy saw. */
export class RecordingObserver implements KmsObserver {
  readonly calls: KmsCallEvent[] = [];
  readonly retries: KmsRetryEvent[] = [];
  readonly batches: KmsBatchEvent[] = [];

  onCall(event: KmsCallEvent): void {
    this.calls.push(event);
  }

  onRetry(event: KmsRetryEvent): void {
    this.retries.push(event);
  }

  onBatch(event: KmsBatchEvent): void {
    this.batches.push(event);
  }

  count(operation: KmsCallEvent['operation'], result?: KmsCallEvent['result']): number {
    return this.calls.filter((c) => c.operation === operation && (result === undefined || c.result === result)).length;
  }
}

/** A limiter that counts the tokens it hands out, to prove every attempt went through it. */
export class CountingLimiter implements RateLimiter {
  acquired = 0;
  constructor(private readonly inner: RateLimiter) {}

  async acquire(): Promise<void> {
    await this.inner.acquire();
    this.acquired += 1;
  }
}

/**
 * The real stack (a real KMS: moto's by default, or the one named; Redis) with a fault proxy in front
 * of KMS. The proxied client makes one attempt per call, so every retry the proxy sees is the batcher's own.
 */
export interface KmsHarness {
  readonly stack: TestStack;
  readonly proxy: FaultProxy;
  readonly proxiedKms: KMSClient;
  readonly limiter: CountingLimiter;
  batcher(options?: Partial<KmsBatcherOptions>): { batcher: KmsBatcher; observer: RecordingObserver };
  close(): Promise<void>;
}

export async function openKmsHarness(
  proxyOptions: Omit<FaultProxyOptions, 'target'> = {},
  kms?: KmsUnderTest,
): Promise<KmsHarness> {
  const stack = openStack(kms ? { kmsEndpoint: kms.endpoint } : {});
  /* Precondition: the stack env names a KMS endpoint to put the proxy in front of. */
  if (!stack.config.kmsEndpoint) throw new Error('AWS_ENDPOINT_URL_KMS is not set: eval "$(bash scripts/stack.sh env)"');
  const proxy = await FaultProxy.start({ ...proxyOptions, target: stack.config.kmsEndpoint });
  const proxiedKms = makeKmsClient({ ...stack.config, kmsEndpoint: proxy.url }, { retries: 'none' });
  // High enough never to slow a test; it is here so every call really goes through Redis.
  const shared = new RedisRateLimiter({
    redis: stack.redis,
    prefix: stack.config.redisPrefix,
    campaign: uniqueName('c'),
    ratePerSecond: 2_000,
    burst: 200,
  });
  const limiter = new CountingLimiter(shared);
  return {
    stack,
    proxy,
    proxiedKms,
    limiter,
    batcher(options = {}) {
      const observer = new RecordingObserver();
      const batcher = new KmsBatcher({
        kms: proxiedKms,
        limiter,
        retry: { baseMs: 2, capMs: 20 },
        observer,
        ...options,
      });
      return { batcher, observer };
    },
    async close() {
      proxiedKms.destroy();
      await proxy.close();
      await stack.close();
    },
  };
}

/** A data key wrapped by the stack's KMS under `keyId`, made with the unproxied client so the proxy counts stay clean. */
export async function wrapFreshDataKey(kms: KMSClient, keyId: string, context: Record<string, string>): Promise<Uint8Array> {
  const out = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: context }));
  out.Plaintext?.fill(0);
  if (!out.CiphertextBlob) throw new Error('GenerateDataKey returned no blob');
  return out.CiphertextBlob;
}
