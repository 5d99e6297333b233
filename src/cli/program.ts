import { Command, CommanderError } from 'commander';
import { ConfigError } from '../errors.js';
import { registerControl } from './control.js';
import { registerDoctor } from './doctor.js';
import { registerReport } from './report.js';
import { registerStart } from './start.js';
import { registerWorker } from './worker.js';

/** Exit codes, documented in the README: 0 done, 1 the work failed, 2 bad flags or configuration. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export function buildProgram(): Command {
  const program = new Command('rekey')
    .description('Re-encrypt client-side envelope-encrypted S3 objects in bulk (S3 Encryption Client V1/V2/V3).')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) });
  registerStart(program);
  registerWorker(program);
  registerControl(program);
  registerReport(program);
  registerDoctor(program);
  return program;
}

/** Runs the CLI and turns every usage or configuration problem into a message and exit code 2. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[]);
    return EXIT.ok;
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
