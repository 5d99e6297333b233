import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { ChainCore } from './cores.js';
import type { CipherCore } from './cores.js';
import type { DataKey } from './data-key.js';
import { asCipherLayerError } from './protocol.js';
import { mapKey, openDecryptCore, openEncryptCore } from './specs.js';
import type { DecryptParams, DecryptSpec, EncryptParams, EncryptSpec, Limits } from './specs.js';

export interface CipherStreamOptions extends Limits {
  readonly highWaterMark?: number;
}

/**
 * A Transform over one cipher core. Output pushed before the stream ends is not yet authenticated: only a
 * clean `'end'` (or `'finish'`) means the tag verified, and any failure surfaces as a typed error.
 */
export class CipherTransform extends Transform {
  readonly #core: CipherCore;
  readonly #out: Buffer[] = [];
  #bytesIn = 0;
  #bytesOut = 0;

  constructor(core: CipherCore, options: CipherStreamOptions = {}) {
    super(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark });
    this.#core = core;
  }

  get bytesIn(): number {
    return this.#bytesIn;
  }

  get bytesOut(): number {
    return this.#bytesOut;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytesIn += chunk.length;
    this.#run(() => this.#core.update(chunk, this.#out), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#run(() => this.#core.final(this.#out), callback);
  }

  #run(step: () => void, callback: TransformCallback): void {
    try {
      step();
    } catch (err) {
      this.#out.length = 0;
      callback(asCipherLayerError(err));
      return;
    }
    for (const piece of this.#out) {
      this.#bytesOut += piece.length;
      this.push(piece);
    }
    this.#out.length = 0;
    callback();
  }
}

/** Decrypts a V1/V2/V3 body in-process; the spec's key is consumed (zeroed) here. */
export function createDecryptStream(spec: DecryptSpec, options: CipherStreamOptions = {}): CipherTransform {
  return new CipherTransform(openDecrypt(spec, options), options);
}

/** Encrypts to V2 AES/GCM or V3 in-process; the spec's key is consumed (zeroed) here. */
export function createEncryptStream(spec: EncryptSpec, options: CipherStreamOptions = {}): CipherTransform {
  return new CipherTransform(openEncrypt(spec, options), options);
}

/** Decrypt under the old key and encrypt under the new one in a single pass. */
export function createReencryptStream(
  decrypt: DecryptSpec,
  encrypt: EncryptSpec,
  options: CipherStreamOptions = {},
): CipherTransform {
  let first: CipherCore;
  try {
    first = openDecrypt(decrypt, options);
  } catch (err) {
    encrypt.key.destroy();
    throw err;
  }
  return new CipherTransform(new ChainCore(first, openEncrypt(encrypt, options)), options);
}

function openDecrypt(spec: DecryptParams<DataKey>, limits: Limits): CipherCore {
  return consume(spec.key, (bytes) => openDecryptCore(mapKey(spec, bytes), limits));
}

function openEncrypt(spec: EncryptParams<DataKey>, limits: Limits): CipherCore {
  return consume(spec.key, (bytes) => openEncryptCore(mapKey(spec, bytes), limits));
}

function consume(key: DataKey, open: (bytes: Uint8Array) => CipherCore): CipherCore {
  try {
    return key.use(open);
  } finally {
    key.destroy();
  }
}
