/**
 * Where the figures come from: the machine, the runtime and the stack's folder. Kept apart from support.ts,
 * which loads the AWS SDK, so that bench/crypto.ts measures ciphers in a process without it (a larger heap
 * makes every GC that Node's per-update cipher outputs trigger dearer).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export const STACK_DIR = process.env['REKEY_STACK_DIR'] ?? fileURLToPath(new URL('../.stack', import.meta.url));

/** The line that says where the figures come from; the load average says how busy the shared machine was. */
export function machineLine(): string {
  const openssl = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
  const load = loadavg().map((l) => l.toFixed(1)).join(' ');
  return `machine: ${cpus()[0]?.model ?? 'unknown'} ×${cpus().length}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB; node ${process.version} (OpenSSL ${process.versions.openssl}); system ${openssl}; load ${load}`;
}

/** The stack's Python (scripts/stack-requirements.txt, with pyca `cryptography` and its OpenSSL). */
export function stackPython(): string {
  const python = `${STACK_DIR}/venv/bin/python`;
  // Precondition: the stack's venv is installed (npm run bench brings the stack up first).
  if (!existsSync(python)) throw new Error(`no ${python}: run \`npm run stack -- install\` (or \`npm run bench -- NAME\`, which does)`);
  return python;
}
