import { DescribeKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { ConfigError, UnreachableError } from '../errors.js';

/**
 * Resolves a key id, alias or ARN to the key's ARN, which KMS uses in every response; an unknown or
 * unusable target is a configuration error, found before any object is touched. `usable` (the
 * default for a target key) also requires an enabled symmetric key, as any ReEncrypt destination must be.
 */
export async function resolveKeyArn(kms: KMSClient, key: string, role: string, options: { usable?: boolean } = {}): Promise<string> {
  const usable = options.usable ?? role === 'target key';
  try {
    const out = await kms.send(new DescribeKeyCommand({ KeyId: key }));
    const meta = out.KeyMetadata;
    if (!meta?.Arn) throw new ConfigError(`${role} ${key}: KMS returned no key ARN`);
    /* Precondition: rekey wraps data keys only with enabled symmetric encryption keys. */
    if (usable && (meta.KeyState !== 'Enabled' || (meta.KeyUsage ?? 'ENCRYPT_DECRYPT') !== 'ENCRYPT_DECRYPT')) {
      throw new ConfigError(`${role} ${key} is ${meta.KeyState} with usage ${meta.KeyUsage}; name an enabled symmetric encryption key`);
    }
    return meta.Arn;
  } catch (err) {
    // KMS did not answer: not a bad key id, and the error names the endpoint already.
    if (err instanceof ConfigError || err instanceof UnreachableError) throw err;
    const e = err as { name?: string; message?: string };
    throw new ConfigError(`${role} ${key}: ${e.name ?? 'Error'}: ${e.message ?? ''} (check the key id and your kms:DescribeKey permission)`);
  }
}
