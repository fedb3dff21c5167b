// The conformance suite as a product for other projects' CI: --only patterns,
// the JUnit and JSON reports, and a run against a gateway given as a command
// (--gateway-cmd), next to a run of this build.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { containerCommand, processCommand, splitCommand } from '../../../conformance/gateway-under-test.js';
import { renderJson, renderJunit } from '../../../conformance/junit.js';
import { buildMatrix, cellKey } from '../../../conformance/matrix.js';
import type { RunResult } from '../../../conformance/report.js';
import { runConformance } from '../../../conformance/runner.js';
import { parseOnly, selectCells } from '../../../conformance/select.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../../..');
const RUN_JS = path.join(ROOT, 'dist/conformance/run.js');
const MAIN_JS = path.join(ROOT, 'dist/gateway/src/main.js');

// ------------------------------------------------------------------ --only

const matrix = buildMatrix();
const keys = (spec: string) => selectCells(matrix.cells, spec).map(cellKey);

test('--only: a listener glob selects that row, every pair of it and nothing else', (t) => {
  const got = keys('UDP:*');
  const row = matrix.cells.filter((c) => c.row.id === 'UDP' && c.type !== 'na').map(cellKey);
  t.deepEqual(got, row);
  t.true(got.includes('UDP:TCP') && got.includes('UDP:Echo'));
  t.true(got.every((k) => k.startsWith('UDP:')));
});

test('--only: a cluster glob selects that column on every row; cells that are not pairs are left out', (t) => {
  const got = keys('*:websocket');
  t.deepEqual(got, matrix.rows.map((r) => `${r.id}:WebSocket`).filter((k) => matrix.cells.some((c) => cellKey(c) === k && c.type !== 'na')));
  t.true(got.includes('TCP:WebSocket') && got.includes('HTTP:WebSocket'));
  // Echo is a transform column, run on the base pairs only.
  t.deepEqual(keys('*:Echo'), ['UDP:Echo', 'TCP:Echo']);
});

test('--only: comma lists mix exact pairs and globs, case-insensitively, in matrix order without duplicates', (t) => {
  const got = keys('http:*, TCP:UDP,TCP:U?P');
  t.is(got[0], 'TCP:UDP', 'matrix order: the TCP row comes before the HTTP row');
  t.is(got.filter((k) => k === 'TCP:UDP').length, 1);
  t.deepEqual(got.slice(1), matrix.cells.filter((c) => c.row.id === 'HTTP' && c.type !== 'na').map(cellKey));
  t.deepEqual(keys('TCP:JSONEncap+JSONDecap'), ['TCP:JSONEncap+JSONDecap'], 'regular-expression characters in labels are literal');
});

test('--only: malformed patterns and patterns that select nothing are errors naming the pattern', (t) => {
  for (const bad of ['UDP', 'UDP:', ':TCP', 'a:b:c', ' , ']) t.throws(() => parseOnly(bad), { message: /^--only/ }, bad);
  t.throws(() => keys('UDP:Nope*'), { message: /^--only UDP:Nope\*: no such pair/ });
  t.throws(() => keys('HTTP:Echo'), { message: /^--only HTTP:Echo: not a pair: transforms run on/ });
  t.throws(() => keys('UDP:TCP,Bogus:*'), { message: /^--only Bogus:\*/ }, 'one bad pattern in a list is enough');
});

// ------------------------------------------------------------ --gateway-cmd

test('--gateway-cmd: {config} becomes one shell word in process mode and the container path in container mode', (t) => {
  t.is(processCommand('node main.js -c {config} -l info', "/tmp/it's here.json"), `node main.js -c '/tmp/it'\\''s here.json' -l info`);
  t.deepEqual(splitCommand(`node  "a b" 'c"d' e\\ f ""`), ['node', 'a b', 'c"d', 'e f', '']);
  t.throws(() => splitCommand('node "open'), { message: /unterminated/ });
  t.deepEqual(containerCommand(undefined), ['-c', '/config/gateway.json']);
  t.deepEqual(containerCommand('node l7mp-proxy.js -c {config} -s'), ['node', 'l7mp-proxy.js', '-c', '/config/gateway.json', '-s']);
});

// ------------------------------------------------------------------- JUnit

const nasty = 'bad <tag> & "quotes" \'apos\' \u0001ctl\nsecond line';

function syntheticResult(): RunResult {
  return {
    mode: 'process',
    gateway: 'node main.js -c {config}',
    only: undefined,
    rows: ['UDP', 'TCP'],
    cols: [{ id: 'TCP', kind: 'remote', protocols: ['TCP'] }, { id: 'HTTP', kind: 'remote', protocols: ['HTTP'] }, { id: 'Echo', kind: 'transform', protocols: ['Echo'] }],
    pairs: [
      { key: 'UDP:TCP', row: 'UDP', col: 'TCP', type: 'run', status: 'fail', representative: false, ms: 1500, cases: [
        { name: 'roundtrip-1B', status: 'pass', ms: 12 },
        { name: 'eof', status: 'skip', reason: 'UDP has no end-of-stream', ms: 0 },
        { name: 'counters', status: 'fail', reason: nasty, ms: 250 },
      ] },
      { key: 'UDP:HTTP', row: 'UDP', col: 'HTTP', type: 'skip', status: 'skip', reason: 'HTTP cluster needs an HTTP session', representative: false, ms: 0,
        cases: [{ name: 'pair', status: 'skip', reason: 'HTTP cluster needs an HTTP session', ms: 0 }] },
      { key: 'TCP:Echo', row: 'TCP', col: 'Echo', type: 'na', status: 'na', reason: 'not a pair', representative: false, ms: 0, cases: [] },
    ],
    outside: [],
    passed: 1,
    failed: 1,
    skipped: 2,
    durationMs: 1750,
  };
}

/** Python's XML parser (a real one, not ours) turns the document into a summary, or says why it cannot. */
const PY_JUNIT = `
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
def case(c):
    kids = [{"tag": k.tag, "attrib": k.attrib, "text": k.text} for k in c]
    return {"attrib": c.attrib, "children": kids}
print(json.dumps({"tag": root.tag, "attrib": root.attrib, "suites": [
    {"tag": s.tag, "attrib": s.attrib, "cases": [case(c) for c in s]} for s in root]}))
`;

const python = spawnSync('python3', ['--version']).error === undefined;
const ci = process.env.CI === 'true';
const withPython = !python && !ci ? test.skip : test;
if (!python && !ci) console.log('conformance-product: JUnit structure test skipped, python3 not installed (scripts/setup-host.sh installs it)');

withPython('JUnit: well-formed XML, one testsuite per pair and one testcase per case, failure and skipped where they belong', (t) => {
  if (!python) t.fail('python3 not installed (CI=true)');
  const xml = renderJunit(syntheticResult());
  const py = spawnSync('python3', ['-c', PY_JUNIT], { input: xml, encoding: 'utf8' });
  t.is(py.status, 0, `python3 could not parse the JUnit XML: ${py.stderr}\n${xml}`);
  const doc = JSON.parse(py.stdout);
  t.is(doc.tag, 'testsuites');
  t.like(doc.attrib, { tests: '4', failures: '1', skipped: '2', errors: '0', time: '1.750' });
  t.deepEqual(doc.suites.map((s: any) => s.attrib.name), ['UDP:TCP', 'UDP:HTTP'], '"not a pair" cells are no suites');
  const [udpTcp, udpHttp] = doc.suites;
  t.like(udpTcp.attrib, { tests: '3', failures: '1', skipped: '1', errors: '0', time: '1.500' });
  t.deepEqual(udpTcp.cases.map((c: any) => [c.attrib.classname, c.attrib.name, c.attrib.time, c.children.map((k: any) => k.tag)]), [
    ['conformance.UDP:TCP', 'roundtrip-1B', '0.012', []],
    ['conformance.UDP:TCP', 'eof', '0.000', ['skipped']],
    ['conformance.UDP:TCP', 'counters', '0.250', ['failure']],
  ]);
  t.is(udpTcp.cases[1].children[0].attrib.message, 'UDP has no end-of-stream');
  const failure = udpTcp.cases[2].children[0];
  t.is(failure.attrib.message, 'bad <tag> & "quotes" \'apos\' \uFFFDctl second line', 'the message attribute: one line, escaped, no control characters');
  t.is(failure.text, 'bad <tag> & "quotes" \'apos\' \uFFFDctl\nsecond line', 'the body keeps the lines');
  t.like(udpHttp.attrib, { tests: '1', failures: '0', skipped: '1' });
  t.is(udpHttp.cases[0].children[0].tag, 'skipped');
});

test('JSON report: the run result with a format version and the closing line', (t) => {
  const doc = JSON.parse(renderJson(syntheticResult()));
  t.is(doc.version, 1);
  t.is(doc.summary, '1 passed, 1 failed, 2 skipped');
  t.is(doc.gateway, 'node main.js -c {config}');
  t.is(doc.pairs[0].cases[2].status, 'fail');
});

// ---------------------------------------------------- a real second gateway

const missing = [['socat', '-V'], ['curl', '--version']].filter(([cmd, arg]) => spawnSync(cmd!, [arg!]).error !== undefined).map(([cmd]) => cmd!);
const runReal = missing.length > 0 && !ci ? test.serial.skip : test.serial;
if (missing.length > 0 && !ci) console.log(`conformance-product: real runs skipped, ${missing.join(' and ')} not installed`);

const PAIRS = 'UDP:TCP,TCP:UDP';

runReal('npm run conformance -- --gateway-cmd: a second gateway command runs the same pairs, and both pass', async (t) => {
  t.timeout(120_000);
  if (missing.length > 0) t.fail(`${missing.join(' and ')} not installed (CI=true)`);
  // This build, as the default runs it.
  const ours = await runConformance({ only: PAIRS });
  t.is(ours.failed, 0, JSON.stringify(ours.pairs.flatMap((p) => p.cases.filter((c) => c.status === 'fail'))));
  t.true(ours.passed > 0);

  // A differently built gateway: without the native addon (node:dgram UDP, no
  // splice), started through a shell command that leaves a mark, so the test
  // knows the command ran, once per gateway the suite started.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-confprod-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const marks = path.join(dir, 'started');
  const cmd = `echo {config} >> '${marks}'; L7MP_NATIVE=off exec '${process.execPath}' '${MAIN_JS}' -c {config}`;
  const out = path.join(dir, 'report');
  const cli = spawnSync(process.execPath, [RUN_JS, '--only', PAIRS, '--gateway-cmd', cmd, '--out', out], { encoding: 'utf8', timeout: 100_000 });
  t.is(cli.status, 0, `${cli.stdout}\n${cli.stderr}`);
  const lines = cli.stdout.trimEnd().split('\n');
  t.regex(lines.at(-1)!, /^\d+ passed, 0 failed, \d+ skipped$/);
  t.true(cli.stdout.includes(`Gateway under test: ${cmd}`));
  const started = fs.readFileSync(marks, 'utf8').trim().split('\n');
  t.is(started.length, 2, 'one gateway per pair, each started by the command');
  t.true(started.every((f) => f.endsWith('.json')), 'the command got the config file path');

  const theirs = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
  t.is(theirs.gateway, cmd);
  t.deepEqual(theirs.pairs.map((p: any) => p.key), ours.pairs.map((p) => p.key));
  t.deepEqual(theirs.pairs.flatMap((p: any) => p.cases.map((c: any) => `${p.key} ${c.name} ${c.status}`)),
    ours.pairs.flatMap((p) => p.cases.map((c) => `${p.key} ${c.name} ${c.status}`)), 'the same cases, the same results');
  const junit = fs.readFileSync(path.join(out, 'junit.xml'), 'utf8');
  t.is((junit.match(/<testcase /g) ?? []).length, theirs.passed + theirs.failed + theirs.skipped);
  for (const f of ['report.md', 'report.html']) t.true(fs.statSync(path.join(out, f)).size > 0, f);
});
