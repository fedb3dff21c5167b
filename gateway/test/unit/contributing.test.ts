// CONTRIBUTING.md stays true as files move: every path it names exists
// (from the repository root, or from gateway/src for the short forms a
// protocol's imports use), every link resolves, and every `npm run X` it
// tells a contributor to type is a script of package.json.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const text = fs.readFileSync(path.join(ROOT, 'CONTRIBUTING.md'), 'utf8');

test('CONTRIBUTING.md: every path in backquotes and every relative link names a file or folder of the repository', (t) => {
  // Placeholders (<name>) and globs are patterns, not paths.
  const quoted = [...text.matchAll(/`([^`\s<>*]+\/[^`\s<>*]*)`/g)].map((m) => m[1]!.replace(/[:,]$/, ''));
  const links = [...text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/i.test(l));
  t.true(quoted.length > 20, `found ${quoted.length} paths`);
  const exists = (p: string) => [ROOT, path.join(ROOT, 'gateway/src')].some((base) => fs.existsSync(path.resolve(base, p)));
  t.deepEqual([...quoted, ...links].filter((p) => !exists(p)), []);
});

test('CONTRIBUTING.md: every `npm run X` is a script of package.json', (t) => {
  const scripts = Object.keys((JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
  const named = [...text.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!);
  t.true(named.length >= 3);
  t.deepEqual([...new Set(named)].filter((s) => !scripts.includes(s)), []);
});
