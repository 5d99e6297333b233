import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import ts from 'typescript';

/**
 * The layers of docs/design.md §5 hold: read from the source with TypeScript's own parser, so a type-only
 * import, an `export … from` and a dynamic `import()` all count.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');

interface ImportEdge {
  /** The importing file, relative to src/ with `/` separators. */
  readonly from: string;
  /** A file relative to src/ for a relative import, else the package name as written. */
  readonly to: string;
  readonly typeOnly: boolean;
}

const SERVICE_PACKAGES = /^(@aws-sdk\/|ioredis$|bullmq$)/;
const S3_PACKAGES = /^@aws-sdk\/(client-s3|lib-storage)$/;
const KMS_PACKAGES = /^@aws-sdk\/client-kms$/;

/**
 * The folders above the shared layers, top first: each imports only folders after it (docs/design.md §5).
 * cli parses flags; worker composes a worker process; retirement retires KMS keys with the proof of a
 * usage scan; trail is the SIEM audit trail; campaign plans and records campaigns; usage scans a scope
 * for the KMS keys its objects use; rotate moves one object to its new key.
 */
const UPPER_LAYERS = ['cli', 'worker', 'retirement', 'trail', 'campaign', 'usage', 'rotate'];

/** Where clients are built from the configuration: constructing one is not sending a command. */
const CLIENT_FACTORY = 'config/clients.ts';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

function toSrcPath(file: string): string {
  return relative(SRC, file).split('\\').join('/');
}

function isTypeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) return node.isTypeOnly;
  const clause = node.importClause;
  if (clause === undefined) return false;
  if (clause.isTypeOnly) return true;
  const bindings = clause.namedBindings;
  return clause.name === undefined && bindings !== undefined && ts.isNamedImports(bindings) && bindings.elements.every((e) => e.isTypeOnly);
}

/** Every module specifier a file names, with whether only types cross. */
function importsOf(fileName: string, text: string): { specifier: string; typeOnly: boolean }[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: { specifier: string; typeOnly: boolean }[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: isTypeOnly(node) });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [argument] = node.arguments;
      if (argument !== undefined && ts.isStringLiteral(argument)) found.push({ specifier: argument.text, typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function importGraph(): ImportEdge[] {
  return sourceFiles(SRC).flatMap((file) =>
    importsOf(file, readFileSync(file, 'utf8'))
      .filter(({ specifier }) => !specifier.startsWith('node:'))
      .map(({ specifier, typeOnly }) => ({
        from: toSrcPath(file),
        to: specifier.startsWith('.') ? toSrcPath(resolve(dirname(file), specifier)).replace(/\.js$/, '.ts') : specifier,
        typeOnly,
      })),
  );
}

/** The top-level folder of src/ a file lives in; files directly in src/ form the folder `.`. */
function folderOf(srcPath: string): string {
  const parts = srcPath.split('/');
  return parts.length > 1 ? parts[0]! : '.';
}

function isPackage(to: string): boolean {
  return !to.endsWith('.ts');
}

/** Everything a file reaches through relative imports, itself included. */
function reachableFrom(start: string, edges: readonly ImportEdge[]): Set<string> {
  const seen = new Set<string>([start]);
  const pending = [start];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    for (const edge of edges) {
      if (edge.from !== file || seen.has(edge.to)) continue;
      seen.add(edge.to);
      if (!isPackage(edge.to)) pending.push(edge.to);
    }
  }
  return seen;
}

/** For each file of `folders`, what it reaches that `forbidden` matches, as `file reaches target`. */
function reachedFrom(folders: readonly string[], edges: readonly ImportEdge[], forbidden: (to: string) => boolean): string[] {
  const starts = [...new Set(edges.map((e) => e.from))].filter((f) => folders.includes(folderOf(f)));
  return starts.flatMap((start) => [...reachableFrom(start, edges)].filter(forbidden).map((to) => `${start} reaches ${to}`));
}

/** Folder cycles, each as the folders of one strongly connected component (Tarjan). */
function folderCycles(folderEdges: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const connect = (folder: string): void => {
    index.set(folder, index.size);
    low.set(folder, index.get(folder)!);
    stack.push(folder);
    onStack.add(folder);
    for (const next of folderEdges.get(folder) ?? []) {
      if (!index.has(next)) {
        connect(next);
        low.set(folder, Math.min(low.get(folder)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(folder, Math.min(low.get(folder)!, index.get(next)!));
      }
    }
    if (low.get(folder) !== index.get(folder)) return;
    const component: string[] = [];
    for (let member = stack.pop(); member !== undefined; member = stack.pop()) {
      onStack.delete(member);
      component.push(member);
      if (member === folder) break;
    }
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const folder of folderEdges.keys()) if (!index.has(folder)) connect(folder);
  return cycles;
}

function folderGraph(edges: readonly ImportEdge[]): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    if (isPackage(to) || folderOf(from) === folderOf(to)) continue;
    graph.set(folderOf(from), (graph.get(folderOf(from)) ?? new Set()).add(folderOf(to)));
  }
  return graph;
}

const EDGES = importGraph();

describe('import boundaries of src/', () => {
  test('the graph is read: rotate imports formats and crypto imports formats', () => {
    assert.ok(EDGES.some((e) => folderOf(e.from) === 'rotate' && folderOf(e.to) === 'formats' && !isPackage(e.to)));
    assert.ok(EDGES.some((e) => folderOf(e.from) === 'crypto' && folderOf(e.to) === 'formats' && !isPackage(e.to)));
    assert.ok(EDGES.some((e) => e.to === 'bullmq'), 'package imports are seen');
  });

  test('formats and crypto reach nothing of S3, KMS, Redis or BullMQ', () => {
    const forbidden = (to: string): boolean => (isPackage(to) ? SERVICE_PACKAGES.test(to) : ['s3', 'kms'].includes(folderOf(to)));
    assert.deepEqual(reachedFrom(['formats', 'crypto'], EDGES, forbidden), []);
  });

  test('formats imports nothing of crypto: one direction between them', () => {
    assert.deepEqual(reachedFrom(['formats'], EDGES, (to) => !isPackage(to) && folderOf(to) === 'crypto'), []);
  });

  test('rotate never reaches campaign or cli', () => {
    assert.deepEqual(reachedFrom(['rotate'], EDGES, (to) => !isPackage(to) && ['campaign', 'cli'].includes(folderOf(to))), []);
  });

  test('each upper layer imports only the layers below it', () => {
    const upward = EDGES.filter(({ from, to }) => {
      if (isPackage(to)) return false;
      const [a, b] = [UPPER_LAYERS.indexOf(folderOf(from)), UPPER_LAYERS.indexOf(folderOf(to))];
      return b !== -1 && (a === -1 || b < a);
    });
    assert.deepEqual(upward.map((e) => `${e.from} -> ${e.to}`), []);
  });

  test('every top-level folder of src/ is either an upper layer or a shared one the upper layers use', () => {
    const folders = new Set(EDGES.map((e) => folderOf(e.from)));
    for (const layer of UPPER_LAYERS) assert.ok(folders.has(layer), `${layer} exists`);
  });

  test('no cycles between the top-level folders of src/', () => {
    const graph = folderGraph(EDGES);
    const explain = folderCycles(graph).map((cycle) =>
      EDGES.filter((e) => !isPackage(e.to) && cycle.includes(folderOf(e.from)) && cycle.includes(folderOf(e.to)) && folderOf(e.from) !== folderOf(e.to))
        .map((e) => `${e.from} -> ${e.to}`)
        .join('\n'),
    );
    assert.deepEqual(explain, []);
  });

  test('the cycle check finds a cycle of two and of three folders, and none in a chain', () => {
    const graph = (pairs: [string, string][]) =>
      pairs.reduce((g, [a, b]) => g.set(a, (g.get(a) ?? new Set()).add(b)), new Map<string, Set<string>>());
    assert.deepEqual(folderCycles(graph([['a', 'b'], ['b', 'a'], ['b', 'c']])), [['a', 'b']]);
    assert.deepEqual(folderCycles(graph([['a', 'b'], ['b', 'c'], ['c', 'a'], ['d', 'a']])), [['a', 'b', 'c']]);
    assert.deepEqual(folderCycles(graph([['a', 'b'], ['b', 'c']])), []);
  });

  test('S3 commands are sent only from src/s3 and KMS commands only from src/kms (type imports pass)', () => {
    const violations = new Map<string, string[]>();
    for (const { from, to, typeOnly } of EDGES) {
      if (typeOnly || from === CLIENT_FACTORY) continue;
      const s3 = S3_PACKAGES.test(to) && folderOf(from) !== 's3';
      const kms = KMS_PACKAGES.test(to) && folderOf(from) !== 'kms';
      if (s3 || kms) violations.set(from, [...(violations.get(from) ?? []), to].sort());
    }
    assert.deepEqual([...violations], [], 'send the command from a function in src/s3 or src/kms');
  });

  test('type-only imports are told apart from value imports', () => {
    const found = importsOf(
      'x.ts',
      [
        "import type { A } from 'a';",
        "import { type B } from 'b';",
        "import { C, type D } from 'c';",
        "export type { E } from 'e';",
        "export { F } from 'f';",
        "const g = await import('g');",
        "let h: import('h').H;",
      ].join('\n'),
    );
    assert.deepEqual(
      found.map(({ specifier, typeOnly }) => `${specifier}:${typeOnly}`),
      ['a:true', 'b:true', 'c:false', 'e:true', 'f:false', 'g:false', 'h:true'],
    );
  });
});
