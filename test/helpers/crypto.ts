import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RekeyError } from '../../src/errors.js';
import type { ReasonCode } from '../../src/errors.js';

/** Splits `buf` at the given cut points (sorted, deduplicated, clamped) into views. */
export function cut(buf: Uint8Array, points: readonly number[]): Uint8Array[] {
  const sorted = [...new Set(points.map((p) => Math.max(0, Math.min(buf.length, p))))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const p of [...sorted, buf.length]) {
    if (p > start) pieces.push(buf.subarray(start, p));
    start = Math.max(start, p);
  }
  return pieces;
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of source) pieces.push(Buffer.from(piece));
  return Buffer.concat(pieces);
}

/** Runs `pieces` through an in-process cipher stream and returns everything it wrote. */
export async function runTransform(transform: Transform, pieces: readonly Uint8Array[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))), transform, async (source) => {
    for await (const piece of source as AsyncIterable<Buffer>) out.push(piece);
  });
  return Buffer.concat(out);
}

export async function rejectsWith(promise: Promise<unknown>, reason: ReasonCode, label?: string): Promise<RekeyError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof RekeyError, `${label ?? ''} expected RekeyError(${reason}), got ${String(caught)}`);
  assert.equal(caught.reason, reason, `${label ?? ''} ${caught.message}`);
  return caught;
}

/** Reference AES-GCM (one-shot, node:crypto) producing S3EC's ciphertext ‖ tag. */
export function gcmSeal(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Buffer {
  const cipher = createCipheriv(`aes-${key.length * 8}-gcm` as 'aes-256-gcm', key, iv);
  if (aad !== undefined) cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

export function cbcSeal(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv(`aes-${key.length * 8}-cbc` as 'aes-256-cbc', key, iv);
  return Buffer.concat([cipher.update(plaintext), cipher.final()]);
}

export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}
