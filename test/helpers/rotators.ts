import type { S3Client } from '@aws-sdk/client-s3';
import { CipherPool } from '../../src/crypto/pool.js';
import { KmsBatcher } from '../../src/kms/batcher.js';
import { RedisRateLimiter } from '../../src/kms/rate-limiter.js';
import type { ObjectOutcome, ObjectRef } from '../../src/rotate/outcome.js';
import { Rekeyer } from '../../src/rotate/rekey.js';
import { Rewrapper } from '../../src/rotate/rewrap.js';
import { rotationTarget } from '../../src/rotate/target.js';
import { noJournal } from '../../src/s3/upload-journal.js';
import type { TestKey, TestStack } from './stack.js';

export type RotateMode = 'rewrap' | 'rekey';

/** What a campaign sets of its rotation target besides the key. */
export type TargetOptions = Partial<Pick<Parameters<typeof rotationTarget>[0], 'targetFormat' | 'allowUnauthenticatedSource' | 'removeOrphanInstructionFiles' | 'purgeReplacedVersions'>>;

/** Both rotations of rekey for one target key, over the S3 client a test chooses (direct or proxied). */
export class Rotators {
  readonly pool = new CipherPool({ threads: 1 });
  private readonly kms: KmsBatcher;

  constructor(
    stack: TestStack,
    private readonly target: TestKey,
  ) {
    this.kms = new KmsBatcher({
      kms: stack.kms,
      limiter: new RedisRateLimiter({ redis: stack.redis, prefix: stack.config.redisPrefix, campaign: 'reliability', ratePerSecond: 1000 }),
    });
  }

  get targetArn(): string {
    return this.target.arn;
  }

  /** A rotator of `mode` to this target over `s3`, set as a campaign would with `options`. */
  rotator(mode: 'rekey', s3: S3Client, options?: TargetOptions): Rekeyer;
  rotator(mode: RotateMode, s3: S3Client, options?: TargetOptions): Rekeyer | Rewrapper;
  rotator(mode: RotateMode, s3: S3Client, options: TargetOptions = {}): Rekeyer | Rewrapper {
    const target = rotationTarget({ mode, targetKey: this.target.keyId, targetKeyArn: this.target.arn, targetFormat: 'same', sourceKeyArns: [], ...options });
    return mode === 'rewrap'
      ? new Rewrapper({ s3, kms: this.kms }, target)
      : new Rekeyer({ s3, kms: this.kms, pool: this.pool, upload: { partBytes: 5 * 1024 * 1024 } }, target);
  }

  rotate(mode: RotateMode, s3: S3Client, refs: readonly ObjectRef[], options: TargetOptions = {}): Promise<ObjectOutcome[]> {
    return this.rotator(mode, s3, options).rotate(refs, noJournal);
  }

  async rotateOne(mode: RotateMode, s3: S3Client, bucket: string, key: string): Promise<ObjectOutcome> {
    const [outcome] = await this.rotate(mode, s3, [{ bucket, key }]);
    return outcome!;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

export function label(o: ObjectOutcome): string {
  return o.reason ? `${o.outcome}:${o.reason}` : o.outcome;
}
