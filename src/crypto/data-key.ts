import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { CipherError } from '../errors.js';

const REDACTED = 'DataKey(<redacted>)';

/**
 * A plaintext data key. It owns its bytes: `destroy()` zeroes them, and nothing that prints, logs or
 * serialises the object can show them. A key is lent out with `use()` or moved to a thread with `detach()`.
 */
export class DataKey {
  #bytes: Uint8Array | undefined;

  private constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** Takes ownership of `bytes` (e.g. KMS `Plaintext`) without copying; the caller must drop its reference. */
  static adopt(bytes: Uint8Array): DataKey {
    return new DataKey(bytes);
  }

  /** A fresh random key, for tests and for callers without KMS. */
  static generate(length = 32): DataKey {
    return new DataKey(randomBytes(length));
  }

  get length(): number {
    return this.#live().byteLength;
  }

  get destroyed(): boolean {
    return this.#bytes === undefined;
  }

  /** Lends the bytes to `fn`; they must not outlive the call. */
  use<T>(fn: (bytes: Uint8Array) => T): T {
    return fn(this.#live());
  }

  /**
   * Moves the key into a fresh ArrayBuffer to post (and transfer) to a thread, zeroing this copy: after
   * the transfer the only plaintext copy is on the receiving side.
   */
  detach(): ArrayBuffer {
    const bytes = this.#live();
    const moved = new ArrayBuffer(bytes.byteLength);
    new Uint8Array(moved).set(bytes);
    this.destroy();
    return moved;
  }

  /** Zeroes the key; later use fails. */
  destroy(): void {
    this.#bytes?.fill(0);
    this.#bytes = undefined;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }

  #live(): Uint8Array {
    /* Precondition: a destroyed key is never used again. */
    if (this.#bytes === undefined) throw new CipherError('internal', 'data key was already used or destroyed');
    return this.#bytes;
  }
}
