import { Command, CommanderError } from 'commander';
import { loadConfig } from '../config/config.js';
import { ConfigError, StateConflictError } from '../errors.js';
import { registerAudit } from './audit.js';
import { registerControl } from './control.js';
import { registerDoctor } from './doctor.js';
import { registerPlan } from './plan.js';
import { requireRedis, unreachableOf } from './reachability.js';
import { registerReport } from './report.js';
import { registerKeys, registerRetire } from './retire.js';
import { registerSchedules } from './schedule.js';
import { registerStart } from './start.js';
import { registerWorker } from './worker.js';

/**
 * Exit codes, documented in the README: 0 done, 1 the work failed (or a service is unreachable),
 * 2 bad flags or configuration; `audit`, `retire` and `run` add 3 (entries remain under the key) and
 * 4 (none found, but some could not be read); 5 the state does not allow the command (pause a
 * finished campaign; a retirement step before its observation period is over, …).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, keyInUse: 3, keyUseUnproven: 4, stateConflict: 5 } as const;

/** Commands that fail at once without Redis; `worker` waits for it, `doctor` reports on it. */
const NEEDS_REDIS = new Set(['start', 'run', 'plan', 'status', 'pause', 'resume', 'cancel', 'retry', 'report', 'audit', 'schedules', 'unschedule', 'retire', 'keys']);

export function buildProgram(): Command {
  const program = new Command('rekey')
    .description('Re-encrypt client-side envelope-encrypted S3 objects in bulk (S3 Encryption Client V1/V2/V3).')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) })
    .hook('preAction', async (_, command) => {
      if (NEEDS_REDIS.has(command.name())) await requireRedis(loadConfig());
    });
  registerStart(program);
  registerPlan(program);
  registerSchedules(program);
  registerWorker(program);
  registerControl(program);
  registerReport(program);
  registerDoctor(program);
  registerAudit(program);
  registerRetire(program);
  registerKeys(program);
  return program;
}

/** Runs the CLI and turns every usage or configuration problem into a message and exit code 2. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[]);
    // A command that finished but has news for a script (failed objects, a key still in use) says so here.
    return Number(process.exitCode ?? EXIT.ok);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`rekey: ${err.message.split('\n').join('\nrekey: ')}\n`);
      return EXIT.usage;
    }
    if (err instanceof StateConflictError) {
      process.stderr.write(`rekey: ${err.message}\n`);
      return EXIT.stateConflict;
    }
    const down = unreachableOf(err);
    if (down) {
      process.stderr.write(`rekey: ${down.message}\n`);
      return EXIT.failed;
    }
    throw err;
  }
}
