import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { loadLuaCommands, LuaScriptError, type LuaCommand } from '../../../src/redis/lua-commands.js';

const SRC = new URL('../../../src/', import.meta.url);
/** Every `commands/` folder of src/, with the prefix its module loads it under. */
const FOLDERS = ['campaign/commands/', 'kms/commands/'].map((folder) => new URL(folder, SRC));

/** The header (the leading `--[[ … ]]` block) and the code after it. */
function split(lua: string): { header: string; body: string } {
  const end = lua.indexOf(']]');
  return { header: lua.slice(0, end), body: lua.slice(end + 2) };
}

function indicesUsed(code: string, array: 'KEYS' | 'ARGV'): number[] {
  return [...new Set([...code.matchAll(new RegExp(`${array}\\[(\\d+)\\]`, 'g'))].map((m) => Number(m[1])))].sort((a, b) => a - b);
}

describe('the Redis scripts of src/', () => {
  const commands: LuaCommand[] = FOLDERS.flatMap((folder) => loadLuaCommands(folder, 'rekey'));

  test('every commands/ folder of src/ is checked here', () => {
    const found = readdirSync(SRC, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isDirectory() && entry.name === 'commands')
      .map((entry) => pathToFileURL(join(entry.parentPath, entry.name, '/')).href)
      .sort();
    assert.deepEqual(found, FOLDERS.map((f) => f.href).sort());
  });

  test('loads each script under the name its module calls', () => {
    assert.deepEqual(
      commands.map((c) => `${c.name}/${c.numberOfKeys}`),
      ['rekeyAdvancePlan/2', 'rekeyClaimRows/2', 'rekeyCompletePlan/1', 'rekeyForgetFailures/3', 'rekeyRecordBatch/7', 'rekeyTransition/1', 'rekeyVerified/1', 'rekeyKmsRateReserve/1'],
    );
  });

  test('each header documents every KEYS[i] of the script and every fixed ARGV[i] its code reads', () => {
    for (const { name, numberOfKeys, lua } of commands) {
      const { header, body } = split(lua);
      assert.ok(lua.startsWith('--[['), `${name} opens with its header`);
      const keys = Array.from({ length: numberOfKeys }, (_, i) => i + 1);
      assert.deepEqual(indicesUsed(header, 'KEYS'), keys, `${name}: KEYS in the header`);
      assert.ok(indicesUsed(body, 'KEYS').every((i) => i <= numberOfKeys), `${name} reads no key beyond its ${numberOfKeys}`);
      const documented = indicesUsed(header, 'ARGV');
      for (const i of indicesUsed(body, 'ARGV')) assert.ok(documented.includes(i), `${name}: ARGV[${i}] in the header`);
    }
  });

  test('a shared snippet is written into every script that includes it, and no include line is left', () => {
    const finishing = commands.filter((c) => c.lua.includes('local function finish_if_done(main, now)'));
    assert.deepEqual(finishing.map((c) => c.name), ['rekeyCompletePlan', 'rekeyRecordBatch']);
    for (const { name, lua } of commands) assert.doesNotMatch(lua, /@include/, name);
  });
});

describe('loadLuaCommands', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rekey-lua-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const folder = (name: string, files: Record<string, string>): URL => {
    const root = join(dir, name);
    mkdirSync(join(root, 'includes'), { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(join(root, file), text);
    return pathToFileURL(`${root}/`);
  };

  test('expands includes within includes', () => {
    const url = folder('nested', { 'get-2.lua': '--- @include "a"\nreturn 1', 'includes/a.lua': '--- @include "b"\nlocal a = 1', 'includes/b.lua': 'local b = 2' });
    assert.deepEqual(loadLuaCommands(url, 'x'), [{ name: 'xGet', numberOfKeys: 2, lua: 'local b = 2\nlocal a = 1\nreturn 1' }]);
  });

  test('refuses a file not named <name>-<keys>.lua, a missing include and an include cycle', () => {
    assert.throws(() => loadLuaCommands(folder('unnamed', { 'get.lua': 'return 1' }), 'x'), LuaScriptError);
    assert.throws(() => loadLuaCommands(folder('missing', { 'get-1.lua': '--- @include "nope"' }), 'x'), /includes\/nope\.lua/);
    const cycle = folder('cycle', { 'get-1.lua': '--- @include "a"', 'includes/a.lua': '--- @include "b"', 'includes/b.lua': '--- @include "a"' });
    assert.throws(() => loadLuaCommands(cycle, 'x'), /include cycle: get-1\.lua -> includes\/a\.lua -> includes\/b\.lua -> includes\/a\.lua/);
  });
});
