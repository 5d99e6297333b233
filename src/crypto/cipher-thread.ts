import { parentPort } from 'node:worker_threads';
import { serveCipherThread } from './thread-runtime.js';

/* Precondition: this module is the entry of a worker thread started by CipherPool. */
if (parentPort === null) throw new Error('cipher-thread must run as a worker thread');
serveCipherThread(parentPort);
