import type { MessagePort } from 'node:worker_threads';
import { CipherError } from '../errors.js';
import { primeAllocator } from './allocator.js';
import { ChainCore } from './cores.js';
import type { CipherCore } from './cores.js';
import { asCipherLayerError, toWireError } from './protocol.js';
import type { FromThread, ToThread } from './protocol.js';
import { mapKey, openDecryptCore, openEncryptCore } from './specs.js';

/**
 * The thread side of the cipher pool: one synchronous core per open stream, many streams per thread.
 * Every message is handled to completion, so a stream's chunks are processed in the order they came.
 */
export function serveCipherThread(port: MessagePort): void {
  primeAllocator();
  const streams = new Map<number, ThreadStream>();
  const out: Buffer[] = [];

  const reply = (message: FromThread, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);
  const fail = (id: number, err: unknown): void => {
    streams.delete(id);
    out.length = 0;
    reply({ t: 'error', id, error: toWireError(asCipherLayerError(err)) });
  };
  /**
   * Node's cipher gives each output a new buffer; copied into the consumed chunk's buffer instead, the
   * output goes back in a buffer the pool recycles, and Node's buffer dies here, in this thread's small
   * heap, not as new external memory of the main thread's (docs/benchmarks.md, end-to-end). Returns the
   * bytes copied, or undefined when the output does not fit (then it travels as it is).
   */
  const copyInto = (chunk: ArrayBuffer): number | undefined => {
    const total = out.reduce((sum, piece) => sum + piece.byteLength, 0);
    if (total > chunk.byteLength) return undefined;
    const target = new Uint8Array(chunk);
    let at = 0;
    for (const piece of out) {
      target.set(piece, at);
      at += piece.byteLength;
    }
    out.length = 0;
    return at;
  };
  const drainOut = (): ArrayBuffer[] => {
    const bufs = out.map(ownArrayBuffer);
    out.length = 0;
    return bufs;
  };

  port.on('message', (message: ToThread) => {
    switch (message.t) {
      case 'open':
        try {
          // Only ciphertext may travel in a recycled chunk: the output of a stream that encrypts.
          streams.set(message.id, { core: openCore(message.decrypt, message.encrypt), inPlace: message.encrypt !== undefined });
        } catch (err) {
          fail(message.id, err);
        }
        return;
      case 'data': {
        const stream = streams.get(message.id);
        // Chunks still in flight for a stream that failed or was aborted are dropped.
        if (stream === undefined) return;
        try {
          stream.core.update(new Uint8Array(message.buf, 0, message.len), out);
        } catch (err) {
          fail(message.id, err);
          return;
        }
        const inPlace = stream.inPlace ? copyInto(message.buf) : undefined;
        const bufs = drainOut();
        reply({ t: 'out', id: message.id, bufs, recycled: message.buf, consumed: message.len, inPlace }, [...bufs, message.buf]);
        return;
      }
      case 'end': {
        const stream = streams.get(message.id);
        if (stream === undefined) return;
        try {
          stream.core.final(out);
        } catch (err) {
          fail(message.id, err);
          return;
        }
        streams.delete(message.id);
        const bufs = drainOut();
        reply({ t: 'done', id: message.id, bufs }, bufs);
        return;
      }
      case 'abort':
        streams.delete(message.id);
        return;
      case 'probe':
        reply({ t: 'probe', seq: message.seq, openStreams: streams.size });
        return;
      case 'close':
        port.close();
        return;
    }
  });
}

function openCore(decrypt: ToThreadOpen['decrypt'], encrypt: ToThreadOpen['encrypt']): CipherCore {
  try {
    const first = decrypt === undefined ? undefined : openDecryptCore(mapKey(decrypt, new Uint8Array(decrypt.key)));
    const second = encrypt === undefined ? undefined : openEncryptCore(mapKey(encrypt, new Uint8Array(encrypt.key)));
    if (first !== undefined && second !== undefined) return new ChainCore(first, second);
    const only = first ?? second;
    /* Precondition: a stream decrypts, encrypts, or both. */
    if (only === undefined) throw new CipherError('internal', 'stream has no cipher');
    return only;
  } finally {
    // Whatever failed, no key bytes outlive the attempt.
    if (decrypt !== undefined) new Uint8Array(decrypt.key).fill(0);
    if (encrypt !== undefined) new Uint8Array(encrypt.key).fill(0);
  }
}

type ToThreadOpen = Extract<ToThread, { t: 'open' }>;

interface ThreadStream {
  readonly core: CipherCore;
  /** The output is ciphertext, so it may be handed back in the chunk's own buffer. */
  readonly inPlace: boolean;
}

/**
 * Node gives each cipher output its own ArrayBuffer, which can be transferred as is; anything else (a
 * view into a shared or larger buffer) is copied once so the transfer never takes more than the piece.
 */
function ownArrayBuffer(piece: Buffer): ArrayBuffer {
  const { buffer } = piece;
  if (buffer instanceof ArrayBuffer && piece.byteOffset === 0 && piece.byteLength === buffer.byteLength) return buffer;
  const copy = new ArrayBuffer(piece.byteLength);
  new Uint8Array(copy).set(piece);
  return copy;
}
