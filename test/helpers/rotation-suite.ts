import type { Config } from '../../src/config/config.js';
import { FaultProxy } from './kms-fault-proxy.js';
import { Rotators } from './rotators.js';
import { openStackWithKeys, type TestKey, type TestStack } from './stack.js';

/** What a suite of rotation tests works with: the stack and its two keys, a fault proxy in front of S3, the rotators. */
export interface RotationSuite {
  readonly stack: TestStack;
  readonly oldKey: TestKey;
  readonly newKey: TestKey;
  readonly proxy: FaultProxy;
  readonly rotators: Rotators;
}

/** Opens a suite's parts in a `before` hook: `({ stack, … } = await openRotationSuite())`. */
export async function openRotationSuite(overrides: Partial<Config> = {}): Promise<RotationSuite> {
  const { stack, oldKey, newKey } = await openStackWithKeys(overrides);
  const proxy = await FaultProxy.start({ target: stack.config.s3Endpoint! });
  return { stack, oldKey, newKey, proxy, rotators: new Rotators(stack, newKey) };
}

export async function closeRotationSuite(suite: Pick<RotationSuite, 'stack' | 'proxy' | 'rotators'>): Promise<void> {
  await suite.rotators.close();
  await suite.proxy.close();
  await suite.stack.close();
}
