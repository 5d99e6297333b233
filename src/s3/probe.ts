import { ListBucketsCommand, type S3Client } from '@aws-sdk/client-s3';

/** Whether S3 answers these credentials at all (`rekey doctor`): resolves, or throws the SDK's error. */
export async function probeS3(s3: S3Client): Promise<void> {
  await s3.send(new ListBucketsCommand({}));
}
