import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { parse } from 'csv-parse';
import { ConfigError, RekeyError } from '../errors.js';
import type { ObjectRef } from '../rotate/outcome.js';
import { oldEnough } from '../rotate/target.js';
import { END_CURSOR, listEntries, type ScopedEntry } from '../s3/listing.js';
import { openPlainObject } from '../s3/report-objects.js';
import type { CampaignSource } from './spec.js';

/** One page of a source: the objects, and the cursor from which the next page starts after a restart. */
export interface SourcePage {
  readonly refs: readonly ObjectRef[];
  readonly cursor: string;
  /** Total size of the page's objects when the source tells it (listings, inventories), for estimates. */
  readonly bytes: number | undefined;
}

export interface ReadSourceOptions {
  /** Rows per page of a CSV source; a listing's pages are S3's (at most 1000 keys). */
  readonly pageSize?: number;
  /**
   * Noncurrent versions too: a listing then walks ListObjectVersions, an inventory keeps its
   * `IsLatest=false` rows. The current version is always named without a version id, so rotating it
   * rotates whatever is current when the worker reads it.
   */
  readonly includeVersions?: boolean;
  /** Only objects last modified at or before this instant (epoch ms); only listings know the dates. */
  readonly modifiedBefore?: number;
}

export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!m) throw new ConfigError(`${uri} is not an S3 URI: write s3://bucket/key`);
  return { bucket: m[1]!, key: m[2]! };
}

/** A manifest or inventory file, local or in S3, gunzipped when its name ends in `.gz`. */
async function openText(s3: S3Client, uri: string): Promise<Readable> {
  const raw = uri.startsWith('s3://') ? await openS3Object(s3, parseS3Uri(uri)) : createReadStream(uri);
  return uri.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
}

async function openS3Object(s3: S3Client, at: { bucket: string; key: string }): Promise<Readable> {
  const body = await openPlainObject(s3, at);
  /* Precondition: a manifest, an inventory manifest and its data files name objects that exist. */
  if (body === undefined) throw new RekeyError('gone', `s3://${at.bucket}/${at.key} does not exist`);
  return body;
}

/**
 * A listing as a campaign plans it and its closing verification re-scans it: every entry whatever its
 * name (an instruction file is told by its body and travels with its object: rotate/instruction-entry.ts),
 * none younger than the cut-off, and the current version named without its id.
 */
async function* listing(s3: S3Client, source: { bucket: string; prefix: string }, cursor: string | undefined, options: ReadSourceOptions): AsyncGenerator<SourcePage> {
  const { bucket } = source;
  for await (const page of listEntries(s3, source, cursor, options.includeVersions === true)) {
    const entries = page.entries.filter((e) => oldEnough(e.lastModified, options.modifiedBefore));
    const refs = entries.map((e): ObjectRef => (e.isLatest ? { bucket, key: e.key } : { bucket, key: e.key, versionId: e.versionId }));
    const bytes = entries.reduce((sum, e) => sum + e.size, 0);
    yield { refs, cursor: page.cursor, bytes };
  }
}

/** S3 Batch Operations manifests and S3 Inventory CSV files URL-encode object keys. */
function decodeKey(raw: string): string {
  return /[%+]/.test(raw) ? decodeURIComponent(raw.replace(/\+/g, ' ')) : raw;
}

/**
 * Pages of a CSV. The cursor counts records, not lines: a quoted key may span lines and empty lines
 * are skipped, so only a record count resumes at the right row (csv-parse's `from`).
 */
async function* csvRows(input: Readable, skip: number, pageSize: number, rowToRef: (row: string[]) => ObjectRef | undefined, cursorOf: (row: number) => string): AsyncGenerator<SourcePage> {
  const parser = input.pipe(parse({ relax_column_count: true, skip_empty_lines: true, from: skip + 1 }));
  let refs: ObjectRef[] = [];
  let row = skip;
  for await (const record of parser as AsyncIterable<string[]>) {
    row += 1;
    const ref = rowToRef(record);
    if (ref) refs.push(ref);
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

async function* inventory(s3: S3Client, uri: string, cursor: string | undefined, pageSize: number, includeVersions: boolean): AsyncGenerator<SourcePage> {
  if (cursor === END_CURSOR) return;
  const { bucket: inventoryBucket, manifest } = await readInventoryManifest(s3, uri);
  const columns = (manifest.fileSchema ?? 'Bucket, Key').split(',').map((c) => c.trim());
  const col = (name: string) => columns.indexOf(name);
  const [bi, ki, vi, li] = [col('Bucket'), col('Key'), col('VersionId'), col('IsLatest')];
  const files = manifest.files ?? [];
  const [startFile, startRow] = (cursor ?? '0:0').split(':').map(Number) as [number, number];
  for (let f = startFile; f < files.length; f++) {
    const file = files[f]!;
    const body = await openS3Object(s3, { bucket: inventoryBucket, key: file.key });
    const input = file.key.endsWith('.gz') ? body.pipe(createGunzip()) : body;
    const toRef = (row: string[]): ObjectRef | undefined => {
      const noncurrent = li >= 0 && row[li] === 'false';
      /* Precondition: an inventory with versions lists old versions too; they move only when asked for. */
      if (noncurrent && !includeVersions) return undefined;
      const key = row[ki];
      if (!row[bi] || !key) return undefined;
      // Without IsLatest the row's version may or may not be current: name it, and the worker tells.
      const versioned = vi >= 0 && row[vi] && (li < 0 || noncurrent);
      return { bucket: row[bi]!, key: decodeKey(key), ...(versioned ? { versionId: row[vi] } : {}) };
    };
    const rowCursor = (row: number) => `${f}:${row}`;
    yield* csvRows(input, f === startFile ? startRow : 0, pageSize, toRef, rowCursor);
    yield { refs: [], cursor: f + 1 < files.length ? `${f + 1}:0` : END_CURSOR, bytes: undefined };
  }
}

/** Streams a source page by page from a saved cursor; never holds the whole listing in memory. */
export async function* readSource(
  s3: S3Client,
  source: CampaignSource,
  cursor: string | undefined,
  options: ReadSourceOptions = {},
): AsyncGenerator<SourcePage> {
  const { pageSize = 1000, includeVersions = false, modifiedBefore } = options;
  /* Precondition: an age filter needs dates, which only a listing has. */
  if (modifiedBefore !== undefined && source.kind !== 'listing') {
    throw new ConfigError(`a ${source.kind} source has no object dates; an age filter needs --bucket`);
  }
  switch (source.kind) {
    case 'listing':
      yield* listing(s3, source, cursor, { includeVersions, modifiedBefore });
      return;
    case 'manifest': {
      if (cursor === END_CURSOR) return;
      const skip = Number(cursor ?? 0);
      for await (const page of csvRows(await openText(s3, source.uri), skip, pageSize, manifestRow, String)) yield page;
      yield { refs: [], cursor: END_CURSOR, bytes: undefined };
      return;
    }
    case 'inventory':
      yield* inventory(s3, source.uri, cursor, pageSize, includeVersions);
  }
}

/**
 * A campaign's scope as the key-usage scan reads it: the same entries the planner planned (readSource),
 * with their dates where a listing gives them. One definition of scope for both.
 */
export async function* scopeEntries(
  s3: S3Client,
  source: CampaignSource,
  options: Pick<ReadSourceOptions, 'includeVersions' | 'modifiedBefore'>,
): AsyncGenerator<ScopedEntry[]> {
  if (source.kind === 'listing') {
    for await (const page of listEntries(s3, source, undefined, options.includeVersions === true)) {
      yield page.entries.filter((e) => oldEnough(e.lastModified, options.modifiedBefore)).map((e) => ({ ...e, bucket: source.bucket }));
    }
    return;
  }
  for await (const page of readSource(s3, source, undefined, options)) {
    yield page.refs.map((ref) => ({ bucket: ref.bucket, key: ref.key, versionId: ref.versionId, isLatest: ref.versionId === undefined, size: 0, lastModified: undefined }));
  }
}
