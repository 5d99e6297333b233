import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ScrapeTarget {
  /** The folder Prometheus's `file_sd_configs` watches for `*.json`. */
  readonly dir: string;
  /** The file's name without `.json`; unique per process, e.g. `worker-<host>-<pid>`. */
  readonly name: string;
  /** host:port where Prometheus reaches the metrics server. */
  readonly address: string;
  /** Target labels, e.g. a distinct `instance`. */
  readonly labels?: Readonly<Record<string, string>>;
}

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const LABEL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ADDRESS = /^[^\s/]+:\d{1,5}$/;

/**
 * Adds a Prometheus file_sd target and returns the function that removes it (safe to call twice). The file is
 * written under a temporary name ending in `.tmp`, outside the `*.json` glob, and renamed into place, so
 * Prometheus never reads half a file.
 */
export async function registerScrapeTarget(target: ScrapeTarget): Promise<() => Promise<void>> {
  const { dir, name, address, labels = {} } = target;
  if (!FILE_NAME.test(name)) throw new TypeError(`scrape target name ${JSON.stringify(name)} must match ${FILE_NAME}`);
  if (!ADDRESS.test(address)) throw new TypeError(`scrape target address ${JSON.stringify(address)} must be host:port`);
  const badLabel = Object.keys(labels).find((label) => !LABEL_NAME.test(label));
  if (badLabel !== undefined) throw new TypeError(`${JSON.stringify(badLabel)} is not a Prometheus label name`);

  await mkdir(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  const temp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temp, `${JSON.stringify([{ targets: [address], labels }], null, 2)}\n`);
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return () => rm(file, { force: true });
}
