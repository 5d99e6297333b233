import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInterface } from 'node:readline';
import type { S3Client } from '@aws-sdk/client-s3';
import { ConfigError } from '../errors.js';
import type { ObjectOutcome } from '../rotate/outcome.js';
import { listKeys, openPlainObject, putPlainObject, putPlainStream } from '../s3/report-objects.js';
import { parseS3Uri } from './sources.js';

/**
 * Where a campaign's rows live: one file per settled batch (its final outcomes, one JSON line each),
 * and the closing verification's remaining entries. Redis keeps only counters and the per-batch
 * markers, so a campaign of any size costs Redis a few bytes per object (docs/benchmarks.md).
 *
 * A batch file is named by its batch (the BullMQ job id), so a batch processed again after a crash
 * writes the same file again: it replaces itself and is never duplicated.
 */
export interface ReportStore {
  /** Where the store is, as the user named it (`s3://bucket/prefix/` or a folder). */
  readonly location: string;
  putBatch(batchId: string, rows: readonly ObjectOutcome[]): Promise<void>;
  /** Every batch's rows, one batch at a time: memory stays one batch. */
  batches(): AsyncGenerator<{ readonly batchId: string; readonly rows: ObjectOutcome[] }>;
  putRemaining(lines: Iterable<string> | AsyncIterable<string>): Promise<void>;
  /** The closing verification's remaining entries, a JSON line each; empty before a verification. */
  remaining(): AsyncGenerator<string>;
}

const BATCHES = 'batches/';
const READ_AHEAD = 32;
const REMAINING = 'remaining.jsonl';

/** A `--report-to` value: an S3 prefix, or a local folder made absolute so every process reads one place. */
export function normaliseReportLocation(value: string): string {
  if (value.startsWith('s3://')) {
    /* Precondition: a report prefix names a bucket. */
    if (!/^s3:\/\/[^/]+/.test(value)) throw new ConfigError(`--report-to ${value}: write s3://bucket/prefix/`);
    return value.endsWith('/') ? value : `${value}/`;
  }
  if (value.trim() === '') throw new ConfigError('--report-to is empty: give s3://bucket/prefix/ or a folder');
  return isAbsolute(value) ? value : resolve(value);
}

export function openReportStore(s3: S3Client, location: string, campaignId: string): ReportStore {
  return location.startsWith('s3://') ? new S3ReportStore(s3, location, campaignId) : new FolderReportStore(location, campaignId);
}

function toLines(rows: readonly ObjectOutcome[]): string {
  return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
}

async function* jsonLines(input: Readable): AsyncGenerator<string> {
  for await (const line of createInterface({ input, crlfDelay: Infinity })) if (line !== '') yield line;
}

async function readRows(input: Readable): Promise<ObjectOutcome[]> {
  const rows: ObjectOutcome[] = [];
  for await (const line of jsonLines(input)) rows.push(JSON.parse(line) as ObjectOutcome);
  return rows;
}

const batchIdOf = (name: string) => name.slice(0, -'.jsonl'.length);

class S3ReportStore implements ReportStore {
  private readonly bucket: string;
  private readonly base: string;

  constructor(
    private readonly s3: S3Client,
    readonly location: string,
    campaignId: string,
  ) {
    const at = parseS3Uri(`${location}${campaignId}/`);
    this.bucket = at.bucket;
    this.base = at.key;
  }

  async putBatch(batchId: string, rows: readonly ObjectOutcome[]): Promise<void> {
    await putPlainObject(this.s3, { bucket: this.bucket, key: `${this.base}${BATCHES}${batchId}.jsonl` }, toLines(rows), 'application/x-ndjson');
  }

  async *batches(): AsyncGenerator<{ batchId: string; rows: ObjectOutcome[] }> {
    const prefix = `${this.base}${BATCHES}`;
    // Files are read READ_AHEAD at once, in listing order: a GET's latency, not its bytes, bounds a
    // report of millions of files. Memory stays READ_AHEAD batches.
    const reading: Promise<{ batchId: string; rows: ObjectOutcome[] } | undefined>[] = [];
    const read = async (key: string) => {
      const body = await openPlainObject(this.s3, { bucket: this.bucket, key });
      // A batch file replaced between the listing and the read is read as it is now.
      return body ? { batchId: batchIdOf(key.slice(prefix.length)), rows: await readRows(body) } : undefined;
    };
    for await (const key of listKeys(this.s3, this.bucket, prefix)) {
      const next = read(key);
      next.catch(() => undefined);
      reading.push(next);
      if (reading.length >= READ_AHEAD) {
        const batch = await reading.shift()!;
        if (batch) yield batch;
      }
    }
    for (const pending of reading) {
      const batch = await pending;
      if (batch) yield batch;
    }
  }

  async putRemaining(lines: Iterable<string> | AsyncIterable<string>): Promise<void> {
    await putPlainStream(this.s3, { bucket: this.bucket, key: `${this.base}${REMAINING}` }, Readable.from(withNewlines(lines)), 'application/x-ndjson');
  }

  async *remaining(): AsyncGenerator<string> {
    const body = await openPlainObject(this.s3, { bucket: this.bucket, key: `${this.base}${REMAINING}` });
    if (body) yield* jsonLines(body);
  }
}

class FolderReportStore implements ReportStore {
  private readonly dir: string;

  constructor(
    readonly location: string,
    campaignId: string,
  ) {
    this.dir = join(location, campaignId);
  }

  async putBatch(batchId: string, rows: readonly ObjectOutcome[]): Promise<void> {
    const dir = join(this.dir, BATCHES);
    await mkdir(dir, { recursive: true });
    // Written aside and renamed: a reader never sees half a file, and a rewrite replaces it whole.
    const tmp = join(dir, `.${batchId}.${process.pid}.tmp`);
    await writeFile(tmp, toLines(rows));
    await rename(tmp, join(dir, `${batchId}.jsonl`));
  }

  async *batches(): AsyncGenerator<{ batchId: string; rows: ObjectOutcome[] }> {
    const dir = join(this.dir, BATCHES);
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.jsonl')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) yield { batchId: batchIdOf(name), rows: await readRows(createReadStream(join(dir, name))) };
  }

  async putRemaining(lines: Iterable<string> | AsyncIterable<string>): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.${REMAINING}.${process.pid}.tmp`);
    await pipeline(Readable.from(withNewlines(lines)), createWriteStream(tmp));
    await rename(tmp, join(this.dir, REMAINING));
  }

  async *remaining(): AsyncGenerator<string> {
    let input;
    try {
      input = createReadStream(join(this.dir, REMAINING));
      yield* jsonLines(input);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** Every row of a campaign, batch file by batch file. */
export async function* outcomesIn(store: ReportStore): AsyncGenerator<ObjectOutcome> {
  for await (const batch of store.batches()) yield* batch.rows;
}

export async function* withNewlines(lines: Iterable<string> | AsyncIterable<string>): AsyncGenerator<string> {
  for await (const line of lines) yield `${line}\n`;
}
