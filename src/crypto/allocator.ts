import { createCipheriv, randomBytes } from 'node:crypto';

/** Just below glibc's 32 MiB ceiling for its dynamic mmap threshold. */
const PRIMING_BYTES = 31 * 1024 * 1024;

/**
 * Node allocates a fresh buffer for every cipher output. glibc serves allocations above its mmap
 * threshold (128 KiB at start) with new mmap'd pages and returns freed heap tops to the kernel, so each
 * 1 MiB output costs ~256 page faults and kernel zeroing: measured, that halves AES-GCM throughput.
 * Freeing one mmap'd chunk raises the threshold to that chunk's size (glibc's dynamic threshold) and the
 * trim threshold to twice that, after which chunk-sized buffers are recycled from the heap. A cipher
 * update of 31 MiB frees such a chunk (Node shrinks its output by the one spare byte it reserved).
 * Elsewhere (musl, other allocators) this is one harmless encryption of zeros.
 */
export function primeAllocator(): void {
  createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16)).update(Buffer.alloc(PRIMING_BYTES));
}
