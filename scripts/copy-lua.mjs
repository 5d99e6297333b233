// The build's second step: tsc compiles only TypeScript, so the Redis scripts (src/**/commands/*.lua) are
// copied to the same places under dist/, where the compiled modules load them (src/redis/lua-commands.ts).
// Plain JavaScript, so the image's build stage runs it without anything the .dockerignore keeps out.
import { cpSync, statSync } from 'node:fs';

const keep = (path) => statSync(path).isDirectory() || path.endsWith('.lua');
cpSync('src', 'dist/src', { recursive: true, filter: keep });
