import { DeleteObjectCommand, GetBucketVersioningCommand, type S3Client } from '@aws-sdk/client-s3';
import { s3Failure } from './errors.js';

/**
 * Whether a bucket may hold noncurrent versions: versioning is on, or was on once (`Suspended` keeps
 * the versions written before). A bucket never versioned answers with no status.
 */
export async function mayHoldVersions(s3: S3Client, bucket: string): Promise<boolean> {
  try {
    const out = await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }));
    return out.Status === 'Enabled' || out.Status === 'Suspended';
  } catch (err) {
    throw s3Failure(err, `GetBucketVersioning s3://${bucket}`);
  }
}

/**
 * Deletes one version of an object, by its id only: never the object's current version by name. Errors
 * are the SDK's, so the caller tells `gone` (as good as deleted) from a refusal with s3Failure.
 */
export async function deleteVersion(s3: S3Client, bucket: string, key: string, versionId: string): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
}
