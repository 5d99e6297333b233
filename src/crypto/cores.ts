import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { CipherGCM, Decipher, DecipherGCM } from 'node:crypto';
import { CipherError } from '../errors.js';
import { GCM } from '../formats/envelope.js';
import { SUITES } from '../formats/suites.js';

/** GCM tag bytes appended to S3EC bodies (docs/formats.md §1.4). */
export const GCM_TAG_LENGTH = SUITES[GCM].tagLength;
/** GCM's limit of 2^39−256 bits of plaintext under one key and IV, in bytes. */
export const GCM_MAX_PLAINTEXT_LENGTH = SUITES[GCM].maxPlaintextLength;
const AES_BLOCK = 16;

/**
 * One direction of one content cipher, driven synchronously. Streams and the thread pool wrap the same
 * cores, so every check lives in exactly one place.
 */
export interface CipherCore {
  /** Appends the output for `chunk` to `out`; keeps no reference to `chunk` once it returns. */
  update(chunk: Uint8Array, out: Buffer[]): void;
  /** Verifies what only the end can tell (tag, padding, length) and appends the last output. */
  final(out: Buffer[]): void;
}

export interface CoreOptions {
  /** Additional authenticated data (GCM only). */
  readonly aad?: Uint8Array;
  /** `x-amz-unencrypted-content-length`: decrypting to any other length fails as `truncated`. */
  readonly expectedLength?: number;
  /** Default: the GCM limit. */
  readonly maxPlaintextLength?: number;
}

/**
 * AES-GCM decryption of `ciphertext ‖ tag`. The last 16 bytes seen are held back as the candidate tag,
 * since only the end of the stream tells which bytes it is.
 */
export class GcmDecryptCore implements CipherCore {
  readonly #decipher: DecipherGCM;
  readonly #tail = Buffer.alloc(GCM_TAG_LENGTH);
  #tailLength = 0;
  readonly #length: LengthGuard;

  constructor(key: Uint8Array, iv: Uint8Array, options: CoreOptions = {}) {
    this.#decipher = createDecipheriv(aesAlgorithm(key, 'gcm'), key, iv, { authTagLength: GCM_TAG_LENGTH });
    if (options.aad !== undefined) this.#decipher.setAAD(options.aad);
    this.#length = new LengthGuard(options);
  }

  update(chunk: Uint8Array, out: Buffer[]): void {
    const total = this.#tailLength + chunk.byteLength;
    if (total <= GCM_TAG_LENGTH) {
      this.#tail.set(chunk, this.#tailLength);
      this.#tailLength = total;
      return;
    }
    const emit = total - GCM_TAG_LENGTH;
    this.#length.add(emit);
    const fromTail = Math.min(this.#tailLength, emit);
    const fromChunk = emit - fromTail;
    if (fromTail > 0) out.push(this.#decipher.update(this.#tail.subarray(0, fromTail)));
    if (fromChunk > 0) out.push(this.#decipher.update(chunk.subarray(0, fromChunk)));
    const kept = this.#tailLength - fromTail;
    this.#tail.copyWithin(0, fromTail, this.#tailLength);
    this.#tail.set(chunk.subarray(fromChunk), kept);
    this.#tailLength = GCM_TAG_LENGTH;
  }

  final(out: Buffer[]): void {
    /* Precondition: the body holds at least a whole tag. */
    if (this.#tailLength < GCM_TAG_LENGTH) {
      throw new CipherError('truncated', `GCM body is ${this.#tailLength} bytes, shorter than its ${GCM_TAG_LENGTH}-byte tag`);
    }
    this.#length.assertComplete();
    this.#decipher.setAuthTag(this.#tail);
    let last: Buffer;
    try {
      last = this.#decipher.final();
    } catch (cause) {
      throw new CipherError('tag-mismatch', 'GCM tag does not verify: wrong key or altered body', { cause });
    }
    pushNonEmpty(out, last);
  }
}

/** Legacy AES-CBC with PKCS#7 padding (V1 and some V2 writers); unauthenticated, so decrypt-only. */
export class CbcDecryptCore implements CipherCore {
  readonly #decipher: Decipher;
  readonly #length: LengthGuard;
  #ciphertextLength = 0;

  constructor(key: Uint8Array, iv: Uint8Array, options: CoreOptions = {}) {
    this.#decipher = createDecipheriv(aesAlgorithm(key, 'cbc'), key, iv);
    this.#length = new LengthGuard(options);
  }

  update(chunk: Uint8Array, out: Buffer[]): void {
    this.#ciphertextLength += chunk.byteLength;
    const plain = this.#decipher.update(chunk);
    this.#length.add(plain.length);
    pushNonEmpty(out, plain);
  }

  final(out: Buffer[]): void {
    /* Precondition: CBC ciphertext is one or more whole blocks. */
    if (this.#ciphertextLength === 0 || this.#ciphertextLength % AES_BLOCK !== 0) {
      throw new CipherError('truncated', `CBC body of ${this.#ciphertextLength} bytes is not whole 16-byte blocks`);
    }
    let last: Buffer;
    try {
      last = this.#decipher.final();
    } catch (cause) {
      throw new CipherError('bad-padding', 'CBC padding is invalid: wrong key or altered body', { cause });
    }
    this.#length.add(last.length);
    this.#length.assertComplete();
    pushNonEmpty(out, last);
  }
}

/** AES-GCM encryption; the 16-byte tag follows the ciphertext, as S3EC stores it. */
export class GcmEncryptCore implements CipherCore {
  readonly #cipher: CipherGCM;
  readonly #length: LengthGuard;

  constructor(key: Uint8Array, iv: Uint8Array, options: Omit<CoreOptions, 'expectedLength'> = {}) {
    this.#cipher = createCipheriv(aesAlgorithm(key, 'gcm'), key, iv, { authTagLength: GCM_TAG_LENGTH });
    if (options.aad !== undefined) this.#cipher.setAAD(options.aad);
    this.#length = new LengthGuard(options);
  }

  update(chunk: Uint8Array, out: Buffer[]): void {
    if (chunk.byteLength === 0) return;
    this.#length.add(chunk.byteLength);
    out.push(this.#cipher.update(chunk));
  }

  final(out: Buffer[]): void {
    pushNonEmpty(out, this.#cipher.final());
    out.push(this.#cipher.getAuthTag());
  }
}

/** Decrypt-then-encrypt in one pass: the re-encryption a rekey runs. */
export class ChainCore implements CipherCore {
  readonly #first: CipherCore;
  readonly #second: CipherCore;
  readonly #between: Buffer[] = [];

  constructor(first: CipherCore, second: CipherCore) {
    this.#first = first;
    this.#second = second;
  }

  update(chunk: Uint8Array, out: Buffer[]): void {
    this.#first.update(chunk, this.#between);
    this.#drain(out);
  }

  final(out: Buffer[]): void {
    // The old tag or padding is verified before the new tag exists, so a new ciphertext that ends
    // cleanly implies the old one was authentic.
    this.#first.final(this.#between);
    this.#drain(out);
    this.#second.final(out);
  }

  #drain(out: Buffer[]): void {
    for (const piece of this.#between) this.#second.update(piece, out);
    this.#between.length = 0;
  }
}

/** Counts plaintext against the cipher's limit and the length the writer recorded. */
class LengthGuard {
  #length = 0;
  readonly #expected: number | undefined;
  readonly #max: number;

  constructor(options: CoreOptions) {
    this.#expected = options.expectedLength;
    this.#max = options.maxPlaintextLength ?? GCM_MAX_PLAINTEXT_LENGTH;
  }

  add(bytes: number): void {
    this.#length += bytes;
    /* Precondition: one key and IV never cover more plaintext than GCM allows. */
    if (this.#length > this.#max) throw new CipherError('too-large', `content exceeds ${this.#max} bytes`);
    /* Precondition: the body is not longer than the length the writer recorded. */
    if (this.#expected !== undefined && this.#length > this.#expected) {
      throw new CipherError('truncated', `body decrypts to more than the recorded ${this.#expected} bytes`);
    }
  }

  assertComplete(): void {
    /* Postcondition: the body decrypts to exactly the length the writer recorded. */
    if (this.#expected !== undefined && this.#length !== this.#expected) {
      throw new CipherError('truncated', `body decrypts to ${this.#length} bytes, ${this.#expected} were recorded`);
    }
  }
}

type AesMode = 'gcm' | 'cbc';

function aesAlgorithm<M extends AesMode>(key: Uint8Array, mode: M): `aes-${128 | 192 | 256}-${M}` {
  /* Precondition: the data key is an AES key. */
  if (key.byteLength !== 16 && key.byteLength !== 24 && key.byteLength !== 32) {
    throw new CipherError('wrong-key', `data key is ${key.byteLength} bytes, not an AES key`);
  }
  return `aes-${(key.byteLength * 8) as 128 | 192 | 256}-${mode}`;
}

function pushNonEmpty(out: Buffer[], piece: Buffer): void {
  if (piece.length > 0) out.push(piece);
}

