import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CipherError, ConfigError, RekeyError } from '../errors.js';
import type { DataKey } from './data-key.js';
import { fromWireError } from './protocol.js';
import type { FromThread, ToThread } from './protocol.js';
import { mapKey, withOwnBytes } from './specs.js';
import type { DecryptSpec, EncryptSpec } from './specs.js';

export interface CipherPoolOptions {
  /** Threads in the pool. Default: `os.availableParallelism()`. */
  readonly threads?: number;
  /** Bytes per message to a thread; large chunks keep per-message costs far below the AES work. Default 1 MiB. */
  readonly chunkSize?: number;
  /** Input bytes one stream may have inside a thread at once (at least one chunk). Default 4 MiB. */
  readonly maxInFlightBytes?: number;
  /** The thread entry module. Default: `cipher-thread` beside this module in this build. */
  readonly threadEntry?: URL;
}

export interface CipherStats {
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface ThreadUtilisation {
  readonly thread: number;
  /** False once the thread exited (after close, or until a dead thread is replaced on next use). */
  readonly alive: boolean;
  readonly activeStreams: number;
  /** Event-loop busy and idle milliseconds since the thread started. */
  readonly busyMs: number;
  readonly idleMs: number;
  /** busyMs / (busyMs + idleMs). */
  readonly utilisation: number;
}

export interface ReencryptSpec {
  readonly decrypt: DecryptSpec;
  readonly encrypt: EncryptSpec;
}

export type ByteSource = AsyncIterable<Uint8Array> | Readable;

const MiB = 1024 * 1024;
const SHUTDOWN_GRACE_MS = 5_000;

/** `.ts` under tsx (tests, benchmarks), `.js` in dist/: the entry sits beside this module in both. */
const MODULE_EXTENSION = extname(fileURLToPath(import.meta.url));
export const CIPHER_THREAD_ENTRY = new URL(`./cipher-thread${MODULE_EXTENSION}`, import.meta.url);

/**
 * Runs content ciphers in worker threads so the event loop stays free. Streams are multiplexed over the
 * threads; each has a bounded number of bytes in flight, so memory does not grow with object size.
 * Keys are moved to the thread that uses them (the main-thread copy is detached) and zeroed there as soon
 * as the cipher holds them.
 */
export class CipherPool {
  readonly #slots: ThreadSlot[];
  readonly #chunkSize: number;
  readonly #maxInFlight: number;
  readonly #recycler: ChunkRecycler;
  #nextId = 1;
  #nextSlot = 0;
  #closing: Promise<void> | undefined;

  constructor(options: CipherPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    this.#chunkSize = options.chunkSize ?? MiB;
    this.#maxInFlight = Math.max(options.maxInFlightBytes ?? 4 * MiB, this.#chunkSize);
    /* Precondition: at least one thread, and chunks a thread can be handed. */
    if (!Number.isInteger(threads) || threads < 1) throw new ConfigError(`cipher threads must be a positive integer, got ${threads}`);
    if (!Number.isInteger(this.#chunkSize) || this.#chunkSize < 1) {
      throw new ConfigError(`cipher chunk size must be a positive integer, got ${this.#chunkSize}`);
    }
    this.#recycler = new ChunkRecycler(this.#chunkSize, threads * Math.ceil(this.#maxInFlight / this.#chunkSize) * 2);
    const entry = options.threadEntry ?? CIPHER_THREAD_ENTRY;
    this.#slots = Array.from({ length: threads }, (_, index) => new ThreadSlot(index, entry, this.#recycler));
  }

  get threads(): number {
    return this.#slots.length;
  }

  /**
   * Decrypts `source` under `decrypt` and encrypts it under `encrypt` in one pass. The returned stream ends
   * only after the old tag (or commitment, padding and length) verified; until then its bytes are not
   * to be committed anywhere. Both keys are consumed.
   */
  reencrypt(source: ByteSource, spec: ReencryptSpec): PoolStream {
    return this.#open(source, spec.decrypt, spec.encrypt);
  }

  /** Decrypts `source`; plaintext is authentic only once the stream ends. The key is consumed. */
  decrypt(source: ByteSource, spec: DecryptSpec): PoolStream {
    return this.#open(source, spec, undefined);
  }

  /** Encrypts `source`; the tag is the stream's last 16 bytes. The key is consumed. */
  encrypt(source: ByteSource, spec: EncryptSpec): PoolStream {
    return this.#open(source, undefined, spec);
  }

  /** Per-thread load, for metrics. */
  utilisation(): ThreadUtilisation[] {
    return this.#slots.map((slot) => slot.utilisation());
  }

  /** Streams each thread holds state for, as the threads themselves report it. */
  threadStreamCounts(): Promise<number[]> {
    return Promise.all(this.#slots.map((slot) => slot.probe()));
  }

  /** Fails open streams as `cancelled` and lets every thread exit. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= Promise.all(this.#slots.map((slot) => slot.shutdown())).then(() => undefined);
    return this.#closing;
  }

  #open(source: ByteSource, decrypt: DecryptSpec | undefined, encrypt: EncryptSpec | undefined): PoolStream {
    const keys = [decrypt?.key, encrypt?.key].filter((k): k is DataKey => k !== undefined);
    /* Precondition: the pool is open; a refused stream still consumes its keys. */
    if (this.#closing !== undefined) {
      keys.forEach((k) => k.destroy());
      throw new RekeyError('cancelled', 'cipher pool is closed');
    }
    /* Precondition: every key is live, so the thread never receives a zeroed key. */
    if (keys.some((k) => k.destroyed)) {
      keys.forEach((k) => k.destroy());
      throw new CipherError('internal', 'data key was already used or destroyed');
    }
    const open = {
      t: 'open',
      id: this.#nextId++,
      decrypt: decrypt === undefined ? undefined : withOwnBytes(mapKey<DataKey, ArrayBuffer>(decrypt, decrypt.key.detach())),
      encrypt: encrypt === undefined ? undefined : withOwnBytes(mapKey<DataKey, ArrayBuffer>(encrypt, encrypt.key.detach())),
    } as const;
    const slot = this.#leastLoaded();
    const stream = new PooledStream(slot, open.id, source, {
      chunkSize: this.#chunkSize,
      maxInFlight: this.#maxInFlight,
      recycler: this.#recycler,
    });
    slot.open(stream, open, [open.decrypt?.key, open.encrypt?.key].filter((k): k is ArrayBuffer => k !== undefined));
    stream.start();
    return stream;
  }

  /** Fewest open streams wins; ties rotate so equal threads share new work. */
  #leastLoaded(): ThreadSlot {
    const count = this.#slots.length;
    let best: ThreadSlot | undefined;
    for (let i = 0; i < count; i++) {
      const slot = this.#slots[(this.#nextSlot + i) % count];
      if (slot !== undefined && (best === undefined || slot.activeStreams < best.activeStreams)) best = slot;
    }
    this.#nextSlot = (this.#nextSlot + 1) % count;
    /* Postcondition: the pool has threads (checked in the constructor). */
    if (best === undefined) throw new CipherError('internal', 'cipher pool has no threads');
    return best;
  }
}

interface StreamOptions {
  readonly chunkSize: number;
  readonly maxInFlight: number;
  readonly recycler: ChunkRecycler;
}

/**
 * The output of one pooled cipher stream. A clean `'end'` means the thread verified the input; any
 * failure destroys the stream with a typed RekeyError. Destroying it releases the thread's state and
 * stops reading the source.
 */
export interface PoolStream extends Readable {
  /** Final byte counts once the thread verified the input; rejects as the stream fails. */
  readonly done: Promise<CipherStats>;
  /** Bytes handed to the thread and bytes received from it so far. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /**
   * Gives back a chunk read from this stream once the consumer copied it and holds no view of it, so
   * its buffer carries the next input; anything else is ignored. Optional for consumers.
   */
  release(chunk: Uint8Array): void;
}

class PooledStream extends Readable implements PoolStream {
  readonly done: Promise<CipherStats>;
  readonly #slot: ThreadSlot;
  readonly #id: number;
  readonly #source: ByteSource;
  readonly #options: StreamOptions;
  #resolve!: (stats: CipherStats) => void;
  #reject!: (err: Error) => void;
  #bytesIn = 0;
  #bytesOut = 0;
  /** Chunk buffers pushed with output in them, which the consumer may give back once copied. */
  readonly #returnable = new WeakSet<ArrayBuffer>();
  #inFlight = 0;
  #wantMore = true;
  #settled = false;
  #wake: (() => void) | undefined;

  constructor(slot: ThreadSlot, id: number, source: ByteSource, options: StreamOptions) {
    // Object mode hands each chunk out as the thread sent it: a byte-mode read() merges what is buffered
    // into a new buffer, which would both copy every byte once more and hide the chunks to release.
    super({ objectMode: true, highWaterMark: 1 });
    this.#slot = slot;
    this.#id = id;
    this.#source = source;
    this.#options = options;
    this.done = new Promise<CipherStats>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A caller that only reads the stream sees failures there; `done` must not also crash the process.
    this.done.catch(() => undefined);
  }

  get id(): number {
    return this.#id;
  }

  get bytesIn(): number {
    return this.#bytesIn;
  }

  get bytesOut(): number {
    return this.#bytesOut;
  }

  start(): void {
    void this.#pump();
  }

  override _read(): void {
    this.#wantMore = true;
    this.#wakeUp();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#settle(cancellation(err));
    if (this.#source instanceof Readable) this.#source.destroy();
    this.#wakeUp();
    callback(err);
  }

  /** Output the thread wrote into a chunk's buffer: the buffer returns to the recycler through {@link release}. */
  onOutputInPlace(buf: ArrayBuffer, length: number): void {
    if (this.destroyed || length === 0) {
      this.#options.recycler.give(buf);
      return;
    }
    this.#returnable.add(buf);
    this.#bytesOut += length;
    if (!this.push(Buffer.from(buf, 0, length))) this.#wantMore = false;
  }

  release(chunk: Uint8Array): void {
    const { buffer } = chunk;
    /* Precondition: only a whole chunk this stream handed out, once: a view elsewhere would see it refilled. */
    if (!(buffer instanceof ArrayBuffer) || chunk.byteOffset !== 0 || !this.#returnable.delete(buffer)) return;
    this.#options.recycler.give(buffer);
  }

  onOutput(bufs: readonly ArrayBuffer[], consumed: number): void {
    this.#inFlight -= consumed;
    this.#pushAll(bufs);
    this.#wakeUp();
  }

  onDone(bufs: readonly ArrayBuffer[]): void {
    this.#pushAll(bufs);
    this.#settle(undefined);
    this.push(null);
  }

  onError(err: RekeyError): void {
    this.destroy(err);
  }

  #pushAll(bufs: readonly ArrayBuffer[]): void {
    if (this.destroyed) return;
    for (const buf of bufs) {
      this.#bytesOut += buf.byteLength;
      if (!this.push(Buffer.from(buf))) this.#wantMore = false;
    }
  }

  /** Copies the source into whole chunks (the one copy: chunks must own their buffer to be transferred). */
  async #pump(): Promise<void> {
    const { chunkSize, recycler } = this.#options;
    let chunk: ArrayBuffer | undefined;
    let filled = 0;
    try {
      for await (const piece of this.#source as AsyncIterable<unknown>) {
        if (this.#settled) break;
        const bytes = asBytes(piece);
        for (let offset = 0; offset < bytes.byteLength; ) {
          chunk ??= recycler.take();
          const n = Math.min(bytes.byteLength - offset, chunkSize - filled);
          new Uint8Array(chunk, filled, n).set(bytes.subarray(offset, offset + n));
          filled += n;
          offset += n;
          if (filled === chunkSize) {
            await this.#send(chunk, filled);
            chunk = undefined;
            filled = 0;
            if (this.#settled) return;
          }
        }
      }
      if (this.#settled) return;
      if (chunk !== undefined) await this.#send(chunk, filled);
      if (!this.#settled) this.#slot.post({ t: 'end', id: this.#id });
    } catch (err) {
      if (!this.#settled) this.destroy(err instanceof Error ? err : new RekeyError('internal', 'source failed'));
    }
  }

  async #send(chunk: ArrayBuffer, length: number): Promise<void> {
    while (!this.#settled && (!this.#wantMore || this.#inFlight + length > this.#options.maxInFlight)) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    if (this.#settled) {
      this.#options.recycler.give(chunk);
      return;
    }
    this.#inFlight += length;
    this.#bytesIn += length;
    this.#slot.post({ t: 'data', id: this.#id, buf: chunk, len: length }, [chunk]);
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #settle(err: Error | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#slot.release(this.#id, err !== undefined);
    if (err === undefined) this.#resolve({ bytesIn: this.#bytesIn, bytesOut: this.#bytesOut });
    else this.#reject(err);
  }
}

/** One worker thread and the streams it serves. */
class ThreadSlot {
  readonly #index: number;
  readonly #entry: URL;
  readonly #recycler: ChunkRecycler;
  readonly #streams = new Map<number, PooledStream>();
  readonly #probes = new Map<number, (openStreams: number) => void>();
  #worker: Worker | undefined;
  #probeSeq = 0;
  #lastError: unknown;
  #shuttingDown = false;

  constructor(index: number, entry: URL, recycler: ChunkRecycler) {
    this.#index = index;
    this.#entry = entry;
    this.#recycler = recycler;
    this.#worker = this.#spawn();
  }

  /** A thread that died is replaced on next use, so a broken entry fails streams instead of respawning in a loop. */
  get #live(): Worker {
    /* Precondition: a closed pool starts no threads. */
    if (this.#shuttingDown && this.#worker === undefined) throw new RekeyError('cancelled', 'cipher pool is closed');
    this.#worker ??= this.#spawn();
    return this.#worker;
  }

  get activeStreams(): number {
    return this.#streams.size;
  }

  open(stream: PooledStream, message: ToThread, transfer: ArrayBuffer[]): void {
    this.#streams.set(stream.id, stream);
    this.post(message, transfer);
    this.#updateRef();
  }

  /** Forgets a stream; `abort` also tells the thread to drop its state. */
  release(id: number, abort: boolean): void {
    if (!this.#streams.delete(id)) return;
    if (abort) this.#worker?.postMessage({ t: 'abort', id } satisfies ToThread);
    this.#updateRef();
  }

  post(message: ToThread, transfer: ArrayBuffer[] = []): void {
    this.#live.postMessage(message, transfer);
  }

  utilisation(): ThreadUtilisation {
    const elu = this.#worker?.performance.eventLoopUtilization() ?? { active: 0, idle: 0, utilization: 0 };
    return {
      thread: this.#index,
      alive: this.#worker !== undefined,
      activeStreams: this.#streams.size,
      busyMs: elu.active,
      idleMs: elu.idle,
      utilisation: elu.utilization,
    };
  }

  probe(): Promise<number> {
    if (this.#worker === undefined) return Promise.resolve(0);
    const seq = ++this.#probeSeq;
    return new Promise((resolve) => {
      this.#probes.set(seq, resolve);
      this.post({ t: 'probe', seq });
      this.#updateRef();
    });
  }

  /**
   * An idle pool must not keep the process alive; one with work under way must, or an awaited read
   * would be cut off when nothing else holds the event loop.
   */
  #updateRef(): void {
    if (this.#streams.size > 0 || this.#probes.size > 0) this.#worker?.ref();
    else this.#worker?.unref();
  }

  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    this.#failAll(new RekeyError('cancelled', 'cipher pool closed'));
    this.#answerProbes();
    const worker = this.#worker;
    if (worker === undefined) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.ref();
    this.post({ t: 'close' });
    const grace = setTimeout(() => void worker.terminate(), SHUTDOWN_GRACE_MS);
    await exited;
    clearTimeout(grace);
    this.#worker = undefined;
  }

  #spawn(): Worker {
    const worker = startWorker(this.#entry);
    worker.unref();
    worker.on('message', (message: FromThread) => this.#dispatch(message));
    worker.on('error', (err) => (this.#lastError = err));
    worker.on('exit', () => {
      if (this.#shuttingDown) return;
      // A thread that died took its streams' state with it; fail them, and serve new ones from a new thread.
      this.#worker = undefined;
      this.#failAll(new RekeyError('internal', 'cipher thread exited unexpectedly', { cause: this.#lastError }));
      this.#answerProbes();
    });
    return worker;
  }

  #dispatch(message: FromThread): void {
    switch (message.t) {
      case 'out': {
        const stream = this.#streams.get(message.id);
        if (message.inPlace === undefined) this.#recycler.give(message.recycled);
        else stream?.onOutputInPlace(message.recycled, message.inPlace);
        stream?.onOutput(message.bufs, message.consumed);
        return;
      }
      case 'done':
        this.#streams.get(message.id)?.onDone(message.bufs);
        return;
      case 'error':
        this.#streams.get(message.id)?.onError(fromWireError(message.error));
        return;
      case 'probe':
        this.#probes.get(message.seq)?.(message.openStreams);
        this.#probes.delete(message.seq);
        this.#updateRef();
        return;
    }
  }

  /** A thread that is gone holds no stream state. */
  #answerProbes(): void {
    for (const answer of this.#probes.values()) answer(0);
    this.#probes.clear();
  }

  #failAll(err: RekeyError): void {
    for (const stream of [...this.#streams.values()]) stream.destroy(err);
    this.#streams.clear();
  }
}

/**
 * Node 20 runs no module hooks in worker threads (tsx registers itself on the main thread only), so a
 * `.ts` entry registers tsx in the thread before importing it. Built `.js` entries load directly.
 */
function startWorker(entry: URL): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry);
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { eval: true });
}

/** Chunk buffers come back from the threads and are refilled, so the main thread stops allocating. */
class ChunkRecycler {
  readonly #size: number;
  readonly #max: number;
  readonly #free: ArrayBuffer[] = [];

  constructor(size: number, max: number) {
    this.#size = size;
    this.#max = max;
  }

  take(): ArrayBuffer {
    return this.#free.pop() ?? new ArrayBuffer(this.#size);
  }

  give(buf: ArrayBuffer): void {
    if (buf.byteLength === this.#size && this.#free.length < this.#max) this.#free.push(buf);
  }
}

/**
 * A consumer that stops early (destroy(), a `break` out of for-await, an AbortSignal) cancels the stream;
 * `done` says so with a reason code. Any other error, such as a failing source, passes through as it is.
 */
function cancellation(err: Error | null): Error {
  if (err === null || err.name === 'AbortError') {
    return new RekeyError('cancelled', 'stream was destroyed before it ended', err === null ? undefined : { cause: err });
  }
  return err;
}

function asBytes(piece: unknown): Uint8Array {
  /* Precondition: a byte source yields bytes, never strings or objects. */
  if (!(piece instanceof Uint8Array)) throw new CipherError('internal', 'source yielded a chunk that is not bytes');
  return piece;
}
