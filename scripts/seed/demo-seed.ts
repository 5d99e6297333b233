import { CreateAliasCommand, CreateKeyCommand, ListAliasesCommand, type KMSClient } from '@aws-sdk/client-kms';
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { makeKmsClient, makeS3Client } from '../../src/config/clients.js';
import { loadConfig } from '../../src/config/config.js';
import { seedObjects } from './seed.js';

/**
 * Prepares the demo: two KMS keys (alias/rekey-demo-old, alias/rekey-demo-new) and a bucket of S3
 * Encryption Client objects under the old key. Prints the bucket name; safe to run again.
 */
async function ensureAlias(kms: KMSClient, alias: string): Promise<void> {
  const aliases = await kms.send(new ListAliasesCommand({}));
  if (aliases.Aliases?.some((a) => a.AliasName === alias)) return;
  const key = await kms.send(new CreateKeyCommand({ Description: `rekey demo ${alias}` }));
  await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: key.KeyMetadata!.KeyId! }));
}

const config = loadConfig();
const s3 = makeS3Client(config);
const kms = makeKmsClient(config);
const bucket = process.argv[2] ?? `rekey-demo-${Date.now().toString(36)}`;
await ensureAlias(kms, 'alias/rekey-demo-old');
await ensureAlias(kms, 'alias/rekey-demo-new');
const exists = await s3.send(new HeadBucketCommand({ Bucket: bucket })).then(() => true, () => false);
if (!exists) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
await seedObjects(s3, kms, { bucket, prefix: 'reports/', count: 300, kmsKeyId: 'alias/rekey-demo-old', sizes: [512, 20_000, 150_000], objectsPerDataKey: 10, instructionFileEvery: 9, context: { team: 'demo' } });
await seedObjects(s3, kms, { bucket, prefix: 'media/', count: 8, kmsKeyId: 'alias/rekey-demo-old', sizes: [4 * 1024 * 1024] });
await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'reports/README.txt', Body: 'a plain object: rekey skips it as not-encrypted' }));
process.stdout.write(`${bucket}\n`);
s3.destroy();
kms.destroy();
