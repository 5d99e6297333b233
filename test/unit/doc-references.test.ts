import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';

/**
 * Code, tests and docs cite the design and the format facts as `docs/design.md §4.1` or
 * `docs/formats.md §1.2, §1.8`; every section they name must be a heading of that document.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const DOCS = ['design.md', 'formats.md'] as const;
/** Where code lives: a reference here spells its path from the repository root and names a section. */
const CODE_DIRS = ['src', 'test', 'bench', 'scripts', 'workers'];
const TEXT_FILE = /\.(ts|js|mjs|sh|py|md)$/;

const REFERENCE = /(?<![\w./-])((?:docs\/)?(design|formats)\.md)((?:(?:,|\s+and)?\s*§\d+(?:\.\d+)*)+)/g;
/** A mention in prose; a quoted file name is code, not a citation. */
const BARE_MENTION = /(?<![\w./'-])(?:docs\/)?(?:design|formats)\.md(?![\w'-])/g;

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'fixtures' || entry.name === 'node_modules' ? [] : files(path);
    return TEXT_FILE.test(entry.name) ? [path] : [];
  });
}

/** Section numbers of a document's numbered headings: `## 4. Invariants` is 4, `### 4.1 Nothing lost` is 4.1. */
function sectionsOf(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s/gm)].map((m) => m[1]!));
}

interface Reference {
  readonly where: string;
  readonly doc: (typeof DOCS)[number];
  readonly spelled: string;
  readonly section: string;
}

function referencesIn(path: string): Reference[] {
  const text = readFileSync(path, 'utf8');
  const where = relative(ROOT, path);
  return [...text.matchAll(REFERENCE)].flatMap((m) =>
    [...m[3]!.matchAll(/§(\d+(?:\.\d+)*)/g)].map((s) => ({
      where: `${where}:${text.slice(0, m.index).split('\n').length}`,
      doc: `${m[2]!}.md` as (typeof DOCS)[number],
      spelled: m[1]!,
      section: s[1]!,
    })),
  );
}

const SECTIONS = new Map(DOCS.map((doc) => [doc, sectionsOf(readFileSync(join(ROOT, 'docs', doc), 'utf8'))]));
const CODE_FILES = CODE_DIRS.flatMap((dir) => files(join(ROOT, dir)));
const DOC_FILES = [...files(join(ROOT, 'docs')), join(ROOT, 'README.md'), join(ROOT, 'CONTRIBUTING.md')].filter(existsSync);

describe('references to the design and formats documents', () => {
  test('both documents have numbered sections', () => {
    for (const doc of DOCS) assert.ok(SECTIONS.get(doc)!.size >= 5, `${doc} has numbered headings`);
    assert.ok(SECTIONS.get('design.md')!.has('4.1') && SECTIONS.get('formats.md')!.has('1.2'));
  });

  test('every section cited in code, tests and docs is a heading of its document', () => {
    const references = [...CODE_FILES, ...DOC_FILES].flatMap(referencesIn);
    assert.ok(references.length >= 40, `only ${references.length} references found: is the pattern still right?`);
    const dangling = references.filter((r) => !SECTIONS.get(r.doc)!.has(r.section)).map((r) => `${r.where}: ${r.doc} §${r.section}`);
    assert.deepEqual(dangling, []);
  });

  test('code and tests spell the path from the repository root and name a section', () => {
    const loose = CODE_FILES.flatMap((path) => {
      const text = readFileSync(path, 'utf8');
      const cited = new Set([...text.matchAll(REFERENCE)].filter((m) => m[1]!.startsWith('docs/')).map((m) => m.index));
      return [...text.matchAll(BARE_MENTION)]
        .filter((m) => !cited.has(m.index))
        .map((m) => `${relative(ROOT, path)}:${text.slice(0, m.index).split('\n').length}: ${m[0]}`);
    });
    assert.deepEqual(loose, [], 'cite a section as docs/<document>.md §<number>');
  });

  test('the reference pattern reads a list of sections', () => {
    const sample = 'see docs/formats.md §1.1, §1.3 and §1.7; docs/design.md §4.1 and §4.4';
    const found = [...sample.matchAll(REFERENCE)].map((m) => `${m[2]}:${[...m[3]!.matchAll(/§([\d.]+)/g)].map((s) => s[1]).join('|')}`);
    assert.deepEqual(found, ['formats:1.1|1.3|1.7', 'design:4.1|4.4']);
  });
});
