import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { parse } from 'csv-parse';
import { ConfigError } from '../errors.js';
import type { ObjectRef } from '../rotate/outcome.js';
import type { CampaignSource } from './spec.js';

/** One page of a source: the objects, and the cursor from which the next page starts after a restart. */
export interface SourcePage {
  readonly refs: readonly ObjectRef[];
  readonly cursor: string;
  /** Total size of the page's objects when the source tells it (listings, inventories), for estimates. */
  readonly bytes: number | undefined;
}

/** Instruction files travel with their object; they are never rotated as objects of their own. */
export const INSTRUCTION_SUFFIX = '.instruction';

export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!m) throw new ConfigError(`${uri} is not an S3 URI: write s3://bucket/key`);
  return { bucket: m[1]!, key: m[2]! };
}

async function openText(s3: S3Client, uri: string): Promise<Readable> {
  if (!uri.startsWith('s3://')) return createReadStream(uri);
  const { bucket, key } = parseS3Uri(uri);
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return out.Body as Readable;
}

async function* listing(s3: S3Client, bucket: string, prefix: string, cursor: string | undefined): AsyncGenerator<SourcePage> {
  if (cursor === 'end') return;
  let token = cursor;
  for (;;) {
    const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, ContinuationToken: token }));
    const objects = (out.Contents ?? []).filter((o) => o.Key && !o.Key.endsWith(INSTRUCTION_SUFFIX));
    const refs = objects.map((o) => ({ bucket, key: o.Key! }));
    const bytes = objects.reduce((sum, o) => sum + (o.Size ?? 0), 0);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
    yield { refs, cursor: token ?? 'end', bytes };
    if (!token) return;
  }
}

/** S3 Batch Operations manifests and S3 Inventory CSV files URL-encode object keys. */
function decodeKey(raw: string): string {
  return decodeURIComponent(raw.replace(/\+/g, ' '));
}

async function* csvRows(input: Readable, skip: number, pageSize: number, rowToRef: (row: string[]) => ObjectRef | undefined, cursorOf: (row: number) => string): AsyncGenerator<SourcePage> {
  const parser = input.pipe(parse({ relax_column_count: true, skip_empty_lines: true, from_line: skip + 1 }));
  let refs: ObjectRef[] = [];
  let row = skip;
  for await (const record of parser as AsyncIterable<string[]>) {
    row += 1;
    const ref = rowToRef(record);
    if (ref && !ref.key.endsWith(INSTRUCTION_SUFFIX)) refs.push(ref);
    if (refs.length >= pageSize) {
      yield { refs, cursor: cursorOf(row), bytes: undefined };
      refs = [];
    }
  }
  yield { refs, cursor: cursorOf(row), bytes: undefined };
}

function manifestRow(row: string[]): ObjectRef | undefined {
  const [bucket, key, versionId] = row;
  if (!bucket || !key) return undefined;
  return { bucket, key: decodeKey(key), ...(versionId ? { versionId } : {}) };
}

interface InventoryManifest {
  readonly sourceBucket?: string;
  readonly fileFormat?: string;
  readonly fileSchema?: string;
  readonly files?: readonly { readonly key: string }[];
}

async function readInventoryManifest(s3: S3Client, uri: string): Promise<{ bucket: string; manifest: InventoryManifest }> {
  const text = await new Response(Readable.toWeb(await openText(s3, uri)) as ReadableStream).text();
  const manifest = JSON.parse(text) as InventoryManifest;
  /* Precondition: only CSV inventories are read; ORC and Parquet need a columnar reader. */
  if ((manifest.fileFormat ?? 'CSV').toUpperCase() !== 'CSV') {
    throw new ConfigError(`${uri}: inventory format ${manifest.fileFormat} is not supported; configure the inventory as CSV`);
  }
  return { bucket: uri.startsWith('s3://') ? parseS3Uri(uri).bucket : (manifest.sourceBucket ?? ''), manifest };
}

async function* inventory(s3: S3Client, uri: string, cursor: string | undefined, pageSize: number): AsyncGenerator<SourcePage> {
  if (cursor === 'end') return;
  const { bucket: inventoryBucket, manifest } = await readInventoryManifest(s3, uri);
  const columns = (manifest.fileSchema ?? 'Bucket, Key').split(',').map((c) => c.trim());
  const col = (name: string) => columns.indexOf(name);
  const [bi, ki, vi, li] = [col('Bucket'), col('Key'), col('VersionId'), col('IsLatest')];
  const files = manifest.files ?? [];
  const [startFile, startRow] = (cursor ?? '0:0').split(':').map(Number) as [number, number];
  for (let f = startFile; f < files.length; f++) {
    const file = files[f]!;
    const body = (await s3.send(new GetObjectCommand({ Bucket: inventoryBucket, Key: file.key }))).Body as Readable;
    const input = file.key.endsWith('.gz') ? body.pipe(createGunzip()) : body;
    const toRef = (row: string[]): ObjectRef | undefined => {
      /* Precondition: an inventory with versions lists old versions too; the current version is what moves. */
      if (li >= 0 && row[li] === 'false') return undefined;
      const key = row[ki];
      if (!row[bi] || !key) return undefined;
      return { bucket: row[bi]!, key: decodeKey(key), ...(vi >= 0 && row[vi] && li < 0 ? { versionId: row[vi] } : {}) };
    };
    const rowCursor = (row: number) => `${f}:${row}`;
    yield* csvRows(input, f === startFile ? startRow : 0, pageSize, toRef, rowCursor);
    yield { refs: [], cursor: f + 1 < files.length ? `${f + 1}:0` : 'end', bytes: undefined };
  }
}

/** Streams a source page by page from a saved cursor; never holds the whole listing in memory. */
export async function* readSource(
  s3: S3Client,
  source: CampaignSource,
  cursor: string | undefined,
  pageSize = 1000,
): AsyncGenerator<SourcePage> {
  switch (source.kind) {
    case 'listing':
      yield* listing(s3, source.bucket, source.prefix, cursor);
      return;
    case 'manifest': {
      if (cursor === 'end') return;
      const skip = Number(cursor ?? 0);
      for await (const page of csvRows(await openText(s3, source.uri), skip, pageSize, manifestRow, String)) yield page;
      yield { refs: [], cursor: 'end', bytes: undefined };
      return;
    }
    case 'inventory':
      yield* inventory(s3, source.uri, cursor, pageSize);
  }
}
