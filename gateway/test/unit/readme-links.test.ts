// The README is read on the repository's page and in a checkout: every
// relative link must name a file or folder inside the repository.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

test('README.md: every relative link and path in backquotes resolves inside the repository', (t) => {
  const text = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const targets = [...text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/i.test(l));
  t.true(targets.length > 5, 'the README links to files');
  const bad = targets.filter((l) => {
    const abs = path.resolve(root, l);
    return !abs.startsWith(root + path.sep) || !fs.existsSync(abs);
  });
  t.deepEqual(bad, [], 'links outside the repository or to nothing');
  t.false(/`\.\.\/[^`]*`/.test(text), 'no path that climbs out of the repository');
});

test('the repository has the MIT LICENSE that package.json names', (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  t.is(pkg.license, 'MIT');
  const license = fs.readFileSync(path.join(root, 'LICENSE'), 'utf8');
  t.regex(license, /^MIT License\n\nCopyright \(c\) \d{4} the l7mp gateway authors\n/);
});
