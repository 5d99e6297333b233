import { GetBucketVersioningCommand, type S3Client } from '@aws-sdk/client-s3';
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
