#!/usr/bin/env node
// The installed entry point runs the compiled CLI (`npm run build`, done by `npm ci` through `prepare`).
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// package.json `engines`: the AWS SDK for JavaScript drops older majors in 2027.
const MIN_MAJOR = 22;
// In a clone, `npm ci` installs the project's pinned Node 24 (devDependency `node`); an older system node
// hands the CLI to it, as the scripts do, rather than run rekey on a runtime it does not support.
const PINNED = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));

if (Number(process.versions.node.split('.')[0]) >= MIN_MAJOR) {
  // V8's compiled code of the SDK, BullMQ and rekey kept on disk (code, never data): a start costs about a
  // fifth less CPU, which every short run and every worker restart pays (docs/benchmarks.md).
  module.enableCompileCache?.();
  await import('../dist/src/cli/main.js');
} else if (existsSync(PINNED)) {
  // foreground-child keeps the terminal's stdio, forwards signals (a worker's SIGTERM drains it) and exits
  // with the child's status.
  const { foregroundChild } = await import('foreground-child');
  foregroundChild(PINNED, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)]);
} else {
  process.stderr.write(`rekey: Node.js ${process.version} is too old: rekey needs Node.js >= ${MIN_MAJOR} (24 LTS recommended); install it, or in a clone of rekey run \`npm ci\`, which brings Node 24\n`);
  process.exitCode = 1;
}
