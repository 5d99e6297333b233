import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config/config.js';

/**
 * JSON lines on stderr, so stdout stays for command output. Nothing that could hold a secret is ever
 * passed to the logger: callers log reason codes, key ids and byte counts, never keys or content.
 */
export function makeLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } }, pino.destination(2));
}

export type { Logger };
