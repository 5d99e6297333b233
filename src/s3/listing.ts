import { ListObjectsV2Command, ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';

/** A saved cursor meaning a listing (and any campaign source) has been read to its end. */
export const END_CURSOR = 'end';

/** One entry of a listing: an object, or with versions one version of it (delete markers are not objects). */
export interface ListedEntry {
  readonly key: string;
  /** Undefined in a listing of current objects. */
  readonly versionId: string | undefined;
  readonly isLatest: boolean;
  readonly size: number;
  readonly lastModified: Date | undefined;
}

/**
 * A bucket's listing, page by page from a saved cursor: ListObjectsV2, or ListObjectVersions whose
 * cursor is the pair of markers it continues from (JSON, as keys may hold any character).
 */
export async function* listEntries(
  s3: S3Client,
  at: { readonly bucket: string; readonly prefix: string },
  cursor: string | undefined,
  versions: boolean,
): AsyncGenerator<{ entries: ListedEntry[]; cursor: string }> {
  if (cursor === END_CURSOR) return;
  const Bucket = at.bucket;
  const Prefix = at.prefix || undefined;
  let token = versions ? undefined : cursor;
  let [keyMarker, versionIdMarker] = versions && cursor ? (JSON.parse(cursor) as [string, string | undefined]) : [undefined, undefined];
  for (;;) {
    let entries: ListedEntry[];
    if (versions) {
      const out = await s3.send(new ListObjectVersionsCommand({ Bucket, Prefix, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker }));
      entries = (out.Versions ?? []).map((v) => ({ key: v.Key ?? '', versionId: v.VersionId ?? 'null', isLatest: v.IsLatest === true, size: v.Size ?? 0, lastModified: v.LastModified }));
      [keyMarker, versionIdMarker] = [out.NextKeyMarker, out.NextVersionIdMarker];
      token = out.IsTruncated ? JSON.stringify([keyMarker, versionIdMarker]) : undefined;
    } else {
      const out = await s3.send(new ListObjectsV2Command({ Bucket, Prefix, ContinuationToken: token }));
      entries = (out.Contents ?? []).map((o) => ({ key: o.Key ?? '', versionId: undefined, isLatest: true, size: o.Size ?? 0, lastModified: o.LastModified }));
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    }
    yield { entries: entries.filter((e) => e.key !== ''), cursor: token ?? END_CURSOR };
    if (!token) return;
  }
}

/** A listed entry with the bucket it was listed from: what a scope is made of. */
export type ScopedEntry = ListedEntry & { readonly bucket: string };
