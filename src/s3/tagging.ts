import { GetObjectTaggingCommand, type S3Client } from '@aws-sdk/client-s3';
import { s3Failure } from './errors.js';

/** The object version whose tags a rewrite must send again, with the tag count its HEAD or GET reported. */
export interface TaggedVersion {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  /** `x-amz-tagging-count` of that read: undefined when none came. */
  readonly tagCount: number | undefined;
}

/**
 * Per client and bucket, whether a missing `x-amz-tagging-count` can be taken to mean "no tags". S3 sends
 * the count with every HEAD and GET of a tagged object, but only to a principal allowed to read tags, and
 * an S3-compatible server might not send it at all. So the first read in each bucket always asks for the
 * tags: an answer proves the permission, and tags under a missing count prove the server does not report
 * it, which keeps that bucket on one GetObjectTagging per object.
 */
const countsTrusted = new WeakMap<S3Client, Map<string, boolean>>();

/** Tags as the `Tagging` request parameter wants them (URL-encoded query string); undefined when none. */
export async function readTagging(s3: S3Client, version: TaggedVersion): Promise<string | undefined> {
  const trusted = bucketsOf(s3);
  const counted = (version.tagCount ?? 0) > 0;
  if (!counted && trusted.get(version.bucket) === true) return undefined;
  const tags = await getTagging(s3, version);
  // A tag count that disagrees with the tags (tags changed in between, or the server does not count) decides nothing.
  if (!trusted.has(version.bucket) && (tags.length > 0) === counted) trusted.set(version.bucket, true);
  else if (tags.length > 0 && !counted) trusted.set(version.bucket, false);
  if (tags.length === 0) return undefined;
  return new URLSearchParams(tags.map((t): [string, string] => [t.Key ?? '', t.Value ?? ''])).toString();
}

function bucketsOf(s3: S3Client): Map<string, boolean> {
  let buckets = countsTrusted.get(s3);
  if (!buckets) countsTrusted.set(s3, (buckets = new Map()));
  return buckets;
}

async function getTagging(s3: S3Client, version: TaggedVersion) {
  try {
    const out = await s3.send(new GetObjectTaggingCommand({ Bucket: version.bucket, Key: version.key, VersionId: version.versionId }));
    return out.TagSet ?? [];
  } catch (err) {
    throw s3Failure(err, `GET tagging of s3://${version.bucket}/${version.key}`);
  }
}
