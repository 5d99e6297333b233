import { BroadcastChannel, parentPort } from 'node:worker_threads';
import type { ToThread } from '../../src/crypto/protocol.js';
import { serveCipherThread } from '../../src/crypto/thread-runtime.js';
import { SPY_CHANNEL, type OpenSeen } from './spy-report.js';

/**
 * A real cipher thread that also reports, on a BroadcastChannel, the whole ArrayBuffer behind each
 * IV, message id and commitment it is sent: what structured cloning brought across the boundary.
 */
if (parentPort === null) throw new Error('spy-thread must run as a worker thread');
const channel = new BroadcastChannel(SPY_CHANNEL);
channel.unref();
parentPort.on('message', (message: ToThread) => {
  if (message.t !== 'open') return;
  const seen: OpenSeen = { fields: [], keyBytes: [] };
  for (const params of [message.decrypt, message.encrypt]) {
    if (params === undefined) continue;
    seen.keyBytes.push(params.key.byteLength);
    for (const [name, value] of Object.entries(params)) {
      if (name === 'key' || !ArrayBuffer.isView(value)) continue;
      seen.fields.push({ name, length: value.byteLength, arrived: Buffer.from(value.buffer).toString('hex') });
    }
  }
  channel.postMessage(seen);
});
serveCipherThread(parentPort);
