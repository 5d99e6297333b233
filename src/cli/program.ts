import { Command, CommanderError } from 'commander';
import { ConfigError } from '../errors.js';
import { registerAudit } from './audit.js';
import { registerControl } from './control.js';
import { registerDoctor } from './doctor.js';
import { registerPlan } from './plan.js';
import { registerReport } from './report.js';
import { registerKeys, registerRetire } from './retire.js';
import { registerSchedules } from './schedule.js';
import { registerStart } from './start.js';
import { registerWorker } from './worker.js';

/**
 * Exit codes, documented in the README: 0 done, 1 the work failed, 2 bad flags or configuration;
 * `audit` and `retire` add 3 (objects remain under the key) and 4 (none found, but some could not be read);
 * `retire` adds 5 (a step refused: observation period not over, key not disabled by rekey, …).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, keyInUse: 3, keyUseUnproven: 4, refused: 5 } as const;

export function buildProgram(): Command {
  const program = new Command('rekey')
    .description('Re-encrypt client-side envelope-encrypted S3 objects in bulk (S3 Encryption Client V1/V2/V3).')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) });
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
    throw err;
  }
}
