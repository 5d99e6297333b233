import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { describe, test } from 'node:test';

/*
 * The installed entry point (bin/rekey.js, compiled CLI) against the stack, on the runtime the tests run
 * on and on an older system node, which hands the CLI to the project's pinned Node 24.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const NODE_VERSION_WARNING = /NodeVersionSupportWarning|will require node >=/;

/** A node on PATH older than every supported major, outside the project's own runtimes (CI's system Node 20). */
function olderSystemNode(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const node = join(dir, 'node');
    if (dir === '' || resolve(dir).startsWith(join(ROOT, 'node_modules')) || !existsSync(node)) continue;
    const version = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    if (version !== '' && Number(version.split('.')[0]) < 22) return node;
  }
  return undefined;
}

/** `rekey doctor` against the stack, without the AWS SDK variable that would hide a version warning. */
function rekeyDoctor(node: string) {
  const { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: _hidden, ...env } = process.env;
  return spawnSync(node, [resolve(ROOT, 'bin/rekey.js'), 'doctor'], { env, encoding: 'utf8' });
}

describe('the runtime rekey runs on', () => {
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
