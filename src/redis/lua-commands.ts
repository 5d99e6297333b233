import { readFileSync, readdirSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

/**
 * Redis scripts kept as `.lua` files beside the module that calls them, BullMQ style: one script a file
 * named `<name>-<number of keys>.lua`, its header documenting each KEYS[i] and ARGV[i]. A line
 * `--- @include "<snippet>"` is replaced by `includes/<snippet>.lua` of the same folder, so a helper
 * several scripts share is written once. The build copies the files next to the compiled modules
 * (scripts/copy-lua.mjs), so they load from the package at run time, under tsx and from dist alike.
 */

export interface LuaCommand {
  /** The ioredis command name: `prefix` and the file's name, e.g. `rekey` + `recordBatch` = `rekeyRecordBatch`. */
  readonly name: string;
  readonly numberOfKeys: number;
  readonly lua: string;
}

export class LuaScriptError extends Error {
  override readonly name = 'LuaScriptError';
}

const FILE_NAME = /^([a-zA-Z]+)-(\d+)\.lua$/;
const INCLUDE = /^--- @include "([a-z0-9-]+)"[ \t]*$/gm;

/** Every script of a folder (`new URL('./commands/', import.meta.url)`), includes expanded. */
export function loadLuaCommands(folder: URL, prefix: string): LuaCommand[] {
  return readdirSync(folder)
    .filter((file) => file.endsWith('.lua'))
    .sort()
    .map((file) => {
      const match = FILE_NAME.exec(file);
      /* Precondition: the file name carries the command name and its number of keys. */
      if (match === null) throw new LuaScriptError(`${file}: name a script <name>-<number of keys>.lua`);
      const [, base, keys] = match as unknown as [string, string, string];
      return { name: `${prefix}${base[0]!.toUpperCase()}${base.slice(1)}`, numberOfKeys: Number(keys), lua: expandIncludes(folder, file, []) };
    });
}

function expandIncludes(folder: URL, file: string, chain: readonly string[]): string {
  /* Precondition: no snippet includes itself, directly or through others. */
  if (chain.includes(file)) throw new LuaScriptError(`include cycle: ${[...chain, file].join(' -> ')}`);
  let text: string;
  try {
    text = readFileSync(new URL(file, folder), 'utf8');
  } catch (cause) {
    throw new LuaScriptError(`${[...chain, file].join(' -> ')}: cannot read ${new URL(file, folder).pathname}`, { cause });
  }
  return text.replace(INCLUDE, (_line, snippet: string) => expandIncludes(folder, `includes/${snippet}.lua`, [...chain, file]));
}

/** Defines each command on a connection once; a connection shared by several stores keeps the first. */
export function defineLuaCommands(redis: Redis | Cluster, commands: readonly LuaCommand[]): void {
  for (const { name, numberOfKeys, lua } of commands) {
    if (typeof (redis as unknown as Record<string, unknown>)[name] === 'function') continue;
    redis.defineCommand(name, { numberOfKeys, lua });
  }
}
