// The Dockerfiles, read as text (no engine needed): the operator and offload
// images repeat the gateway image's build stage so that the classic builder's
// layer cache builds it once for all three; a drift would silently build it
// two or three times (and on CI, with npm ci each time).

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

/** The build stage's instructions (comments and blank lines dropped), from FROM … AS build up to and including `until`. */
function buildStage(dockerfile: string, until: RegExp): string[] {
  const lines = read(dockerfile).split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  const from = lines.findIndex((l) => /^FROM \$\{NODE_IMAGE\} AS build$/.test(l));
  const end = lines.findIndex((l, i) => i > from && until.test(l));
  if (from < 0 || end < 0) throw new Error(`${dockerfile}: no build stage ending in ${until}`);
  return lines.slice(from, end + 1);
}

test('operator/Dockerfile repeats the gateway build stage exactly (npm ci and tsc)', (t) => {
  const tsc = /^RUN npx tsc -p images\/tsconfig\.build\.json$/;
  t.deepEqual(buildStage('operator/Dockerfile', tsc), buildStage('images/gateway/Dockerfile', tsc));
});

test('images/offload/Dockerfile repeats the gateway build stage exactly up to npm ci', (t) => {
  const npmCi = /^RUN npm ci /;
  t.deepEqual(buildStage('images/offload/Dockerfile', npmCi), buildStage('images/gateway/Dockerfile', npmCi));
});

test('every Dockerfile takes its base from the NODE_IMAGE build ARG, default node:24-trixie-slim', (t) => {
  for (const f of ['images/gateway/Dockerfile', 'images/peers/Dockerfile', 'images/offload/Dockerfile', 'operator/Dockerfile']) {
    const text = read(f);
    t.regex(text, /^ARG NODE_IMAGE=node:24-trixie-slim$/m, f);
    t.regex(text, /^FROM \$\{NODE_IMAGE\} AS build$/m, f);
    t.regex(text, /org\.opencontainers\.image\.version="\$\{VERSION\}"/, f);
  }
});
