import { asRekeyError, CipherError, FormatError, RekeyError } from '../errors.js';
import type { ReasonCode } from '../errors.js';
import type { DecryptParams, EncryptParams } from './specs.js';

/**
 * Messages between the pool and a cipher thread. Chunk and key ArrayBuffers are always in the transfer
 * list, so they move between threads without a copy and leave nothing behind on the sending side.
 */
export type ToThread =
  | {
      readonly t: 'open';
      readonly id: number;
      readonly decrypt: DecryptParams<ArrayBuffer> | undefined;
      readonly encrypt: EncryptParams<ArrayBuffer> | undefined;
    }
  /** `len` bytes at the start of `buf`; the thread hands `buf` back in its `out` reply for reuse. */
  | { readonly t: 'data'; readonly id: number; readonly buf: ArrayBuffer; readonly len: number }
  | { readonly t: 'end'; readonly id: number }
  | { readonly t: 'abort'; readonly id: number }
  | { readonly t: 'probe'; readonly seq: number }
  | { readonly t: 'close' };

export type FromThread =
  | {
      readonly t: 'out';
      readonly id: number;
      readonly bufs: ArrayBuffer[];
      /**
       * The chunk's buffer, back for reuse; when `inPlace` is set it holds the output instead (its first
       * `inPlace` bytes, and `bufs` is empty): ciphertext only, copied there once the chunk was consumed.
       */
      readonly recycled: ArrayBuffer;
      readonly consumed: number;
      readonly inPlace?: number;
    }
  /** Sent only after the tag (or padding and length) verified. */
  | { readonly t: 'done'; readonly id: number; readonly bufs: ArrayBuffer[] }
  | { readonly t: 'error'; readonly id: number; readonly error: WireError }
  | { readonly t: 'probe'; readonly seq: number; readonly openStreams: number };

export interface WireError {
  readonly name: string;
  readonly reason: ReasonCode;
  readonly message: string;
}

/**
 * The crypto layer's policy for src/errors.ts asRekeyError: an unexpected failure is a CipherError
 * `internal` whose message says nothing of the data, the cause kept for the logs of this process only.
 */
export function cipherFailure(cause: unknown): RekeyError {
  return new CipherError('internal', 'cipher failed unexpectedly', { cause });
}

/** Everything leaving the crypto layer is a RekeyError: src/errors.ts asRekeyError with cipherFailure. */
export function asCipherLayerError(err: unknown): RekeyError {
  return asRekeyError(err, cipherFailure);
}

export function toWireError(err: RekeyError): WireError {
  return { name: err.name, reason: err.reason, message: err.message };
}

/** Rebuilds the typed error on the pool's side of the thread boundary. */
export function fromWireError(wire: WireError): RekeyError {
  switch (wire.name) {
    case 'FormatError':
      return new FormatError(wire.reason, wire.message);
    case 'CipherError':
      return new CipherError(wire.reason, wire.message);
    default:
      return new RekeyError(wire.reason, wire.message);
  }
}
