import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../../src/config/clients.js';

/** A secret and every form it could take in text or bytes. */
export interface Needle {
  readonly label: string;
  readonly forms: readonly Buffer[];
}

/**
 * Raw bytes, hex in both cases, and base64 / base64url. A secret embedded in a longer buffer that was
 * then base64-encoded shows as the encoding of a 3-byte-aligned slice, so slices at three offsets are
 * searched too (one of them is aligned whatever the secret's position).
 */
export function needle(label: string, secret: Buffer): Needle {
  const slices = secret.length >= 24 ? [0, 1, 2].map((o) => secret.subarray(o, o + Math.floor((secret.length - 2) / 3) * 3)) : [secret];
  const texts = [
    secret.toString('hex'),
    secret.toString('hex').toUpperCase(),
    ...slices.flatMap((s) => [s.toString('base64').replace(/=+$/, ''), s.toString('base64url')]),
  ];
  return { label, forms: [secret, ...new Set(texts)].map((t) => (typeof t === 'string' ? Buffer.from(t) : t)) };
}

export interface Haystack {
  readonly source: string;
  readonly bytes: Buffer;
}

export interface Hit {
  readonly needle: string;
  readonly source: string;
  readonly form: number;
}

export function search(needles: readonly Needle[], haystacks: readonly Haystack[]): Hit[] {
  const hits: Hit[] = [];
  for (const h of haystacks) {
    for (const n of needles) {
      const form = n.forms.findIndex((f) => h.bytes.includes(f));
      if (form >= 0) hits.push({ needle: n.label, source: h.source, form });
    }
  }
  return hits;
}

/**
 * Every key under `prefix` (the campaign store's, and BullMQ's under `prefix` or, on a cluster, its
 * hash tag `{prefix}`) on every master, each value read by its type, plus the key's DUMP: whatever
 * Redis holds for the run, in the form a reader or a backup would see it.
 */
export async function redisHaystacks(client: RedisClient, prefix: string): Promise<Haystack[]> {
  const out: Haystack[] = [];
  for (const redis of client instanceof Cluster ? client.nodes('master') : [client]) {
    for (const pattern of [`${prefix}:*`, `{${prefix}}:*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', 500);
        cursor = next.toString();
        for (const keyBuf of keys) out.push(await haystackOf(redis, keyBuf));
      } while (cursor !== '0');
    }
  }
  return out;
}

async function haystackOf(redis: Redis, keyBuf: Buffer): Promise<Haystack> {
  const key = keyBuf.toString();
  const parts: Buffer[] = [keyBuf];
  const type = await redis.type(key);
  if (type === 'string') parts.push((await redis.getBuffer(key)) ?? Buffer.alloc(0));
  if (type === 'hash') parts.push(...Object.entries(await redis.hgetallBuffer(key)).flatMap(([f, v]) => [Buffer.from(f), v]));
  if (type === 'list') parts.push(...(await redis.lrangeBuffer(key, 0, -1)));
  if (type === 'set') parts.push(...(await redis.smembersBuffer(key)));
  if (type === 'zset') parts.push(...(await redis.zrangeBuffer(key, '0', '-1', 'WITHSCORES')));
  if (type === 'stream') {
    const entries = (await redis.xrangeBuffer(key, '-', '+')) as [Buffer, Buffer[]][];
    parts.push(...entries.flatMap(([id, fields]) => [id, ...fields]));
  }
  parts.push((await redis.dumpBuffer(key)) ?? Buffer.alloc(0));
  return { source: `redis ${type} ${key}`, bytes: Buffer.concat(parts) };
}

/** Every readable file under `dir`, recursively; `since` keeps only entries created or changed after it. */
export async function fileHaystacks(dir: string, since = 0): Promise<Haystack[]> {
  const out: Haystack[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = join(dir, entry.name);
    const info = await stat(path).catch(() => undefined);
    if (!info || Math.max(info.mtimeMs, info.ctimeMs, info.birthtimeMs) < since) continue;
    if (entry.isDirectory()) out.push(...(await fileHaystacks(path)));
    else if (entry.isFile() && info.size < 256 * 1024 * 1024) {
      const bytes = await readFile(path).catch(() => undefined);
      if (bytes) out.push({ source: `file ${path}`, bytes });
    }
  }
  return out;
}
