// The conformance suite (conformance/) as part of `npm test`: every protocol
// pair of the registry runs in process mode, and none may fail; then the same
// suite runs in container mode (the gateway and peer images, built locally,
// under testcontainers): it must run exactly the cases process mode ran, and
// pass them all.
// Pairs with a TCP or Unix stream side check which data path their sessions
// took (conformance/path-check.ts): the default runs have the raw socket
// path on; those rows and columns run once more with L7MP_TCP_FASTPATH=off in
// each mode, and must run the same cases, all passing, on the net.Socket path.
// The suite itself prints nothing here; on failure the whole report is logged.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { rawPathPatterns } from '../../../conformance/path-check.js';
import { CLUSTER_PEERS, LISTENER_PEERS } from '../../../conformance/peers.js';
import { compiledCases, pathLine, renderText, summaryLine, type RunResult } from '../../../conformance/report.js';
import { GATEWAY_MAIN } from '../../../conformance/process-driver.js';
import { runConformance } from '../../../conformance/runner.js';
import { PROTOCOLS } from '../../src/protocols/registry.js';

let processResult: RunResult | undefined;
let containerResult: RunResult | undefined;

/** The rows and columns of the protocols the raw stream path serves (TCP, UnixDomainSocket), from peers.ts. */
const RAW_ROWS_AND_COLUMNS = rawPathPatterns(LISTENER_PEERS, CLUSTER_PEERS);

/** How many passing cases checked each path expectation. */
function pathChecks(r: RunResult): Record<string, number> {
  const n: Record<string, number> = { raw: 0, socket: 0, 'not-raw': 0 };
  for (const c of r.pairs.flatMap((p) => p.cases)) if (c.status === 'pass' && c.path !== undefined) n[c.path]!++;
  return n;
}

/** The cases that ran (passed or failed), on the pairs `sub` ran. */
function ranOn(all: RunResult, sub: RunResult): string[] {
  const keys = new Set(sub.pairs.map((p) => p.key));
  return [...casesWith(all, 'pass'), ...casesWith(all, 'fail')].filter((c) => keys.has(c.split(' ')[0]!.replace('→', ':'))).sort();
}

/**
 * A run with the raw path off, of the raw path's rows and columns: no case
 * fails, the cases that needed the raw path checked that their sessions show
 * no path (and there were some), and it ran exactly the cases the run with
 * the path on ran on those pairs.
 */
function checkOffRun(t: import('ava').ExecutionContext, off: RunResult, on: RunResult | undefined): void {
  const failures = casesWith(off, 'fail');
  if (failures.length > 0) t.log(renderText(off));
  t.deepEqual(failures, [], summaryLine(off));
  t.is(off.tcpFastpath, 'off');
  const n = pathChecks(off);
  t.is(n.raw, 0, 'no case expects the raw path when it is off');
  t.true(n.socket > 0, 'cases checked that their sessions took the net.Socket path');
  if (on === undefined) {
    t.fail('the run with the raw path on did not complete, so there is nothing to compare against');
    return;
  }
  const ran = (x: RunResult) => [...casesWith(x, 'pass'), ...casesWith(x, 'fail')].sort();
  t.deepEqual(ran(off), ranOn(on, off), 'the same cases as with the raw path on');
  // Every case that proved the raw path with it on proved the net.Socket path with it off.
  const proved = (x: RunResult, e: string) => x.pairs.flatMap((p) => p.cases.filter((c) => c.path === e).map((c) => `${p.row}→${p.col} ${c.name}`)).sort();
  t.deepEqual(proved(off, 'socket'), proved(on, 'raw').filter((c) => off.pairs.some((p) => c.startsWith(`${p.row}→${p.col} `))));
}

/** A run with the raw path on: the cases of TCP and Unix stream pairs proved it. */
function checkOnRun(t: import('ava').ExecutionContext, r: RunResult): void {
  t.is(r.tcpFastpath, 'on', 'the default runs have the raw path on (L7MP_TCP_FASTPATH unset)');
  const n = pathChecks(r);
  t.true(n.raw > 0, 'cases checked that their sessions took the raw path');
  t.true(n['not-raw'] > 0, 'cases checked that routes needing user-space bytes stay off the raw path');
  t.is(n.socket, 0);
}

/** "ROW→COL case" for every case with the given status. */
function casesWith(r: RunResult, status: 'pass' | 'fail' | 'skip'): string[] {
  return r.pairs.flatMap((p) => p.cases.filter((c) => c.status === status).map((c) => `${p.row}→${p.col} ${c.name}`)).sort();
}

const missing = [['socat', '-V'], ['curl', '--version']].filter(([cmd, arg]) => spawnSync(cmd!, [arg!]).error !== undefined).map(([cmd]) => cmd!);
const ci = process.env.CI === 'true';
const run = missing.length > 0 && !ci ? test.serial.skip : test.serial;
if (missing.length > 0 && !ci) console.log(`conformance: skipped, ${missing.join(' and ')} not installed (scripts/setup-host.sh installs them)`);

run('conformance: every listener × cluster pair of the registry, process mode, 0 failed', async (t) => {
  t.timeout(900_000, 'the conformance suite did not finish in 15 minutes');
  if (missing.length > 0) t.fail(`${missing.join(' and ')} not installed (CI=true)`);
  const r = await runConformance({ mode: 'process', concurrency: 2, tcpFastpath: 'on' });
  processResult = r;
  const text = renderText(r);
  t.true(text.endsWith(summaryLine(r)), 'the report ends with "N passed, N failed, N skipped"');

  // The matrix is the registry's: every usable listener against every remote cluster...
  const available = PROTOCOLS.filter((p) => p.unavailable === undefined);
  const listeners = available.filter((p) => p.listener !== undefined).map((p) => p.name);
  const clusters = available.filter((p) => p.cluster !== undefined && !p.cluster.virtual && p.transform !== true).map((p) => p.name);
  const absent: string[] = [];
  for (const l of listeners) {
    for (const c of clusters) if (!r.pairs.some((p) => p.row === l && p.col === c)) absent.push(`${l}:${c}`);
  }
  // ...every transform in a column of its own or of its group, and every
  // unavailable protocol as a row and a column (skipped with the registry's reason).
  for (const p of available.filter((x) => x.transform === true && x.cluster !== undefined)) {
    if (!r.cols.some((c) => c.kind === 'transform' && c.protocols.includes(p.name))) absent.push(`transform ${p.name}`);
  }
  const reasonOf = new Map(PROTOCOLS.filter((x) => x.unavailable !== undefined).map((x) => [x.name, x.unavailable!]));
  for (const [name] of reasonOf) {
    if (!r.rows.includes(name) || !r.cols.some((c) => c.id === name)) absent.push(`unavailable ${name}`);
    const cells = r.pairs.filter((x) => x.row === name || x.col === name);
    if (cells.some((x) => x.status !== 'skip' || (x.reason !== reasonOf.get(x.row) && x.reason !== reasonOf.get(x.col)))) {
      absent.push(`${name}: cells not skipped with the registry's reason`);
    }
  }
  t.deepEqual(absent, [], 'pairs missing from the result');

  const failures = r.pairs.flatMap((p) => p.cases.filter((c) => c.status === 'fail').map((c) => `${p.row}→${p.col} ${c.name}: ${c.reason ?? ''}`));
  if (failures.length > 0) t.log(text);
  t.deepEqual(failures, [], summaryLine(r));
  t.is(r.failed, 0);
  t.true(r.passed > 0);
  checkOnRun(t, r);
  t.log(`${summaryLine(r)} in ${(r.durationMs / 1000).toFixed(1)} s; ${pathLine(r)}`);
});

run('conformance: TCP and UnixDomainSocket rows and columns with L7MP_TCP_FASTPATH=off, process mode, same cases on the net.Socket path, 0 failed', async (t) => {
  t.timeout(600_000, 'the raw path rows and columns did not finish in 10 minutes');
  if (missing.length > 0) t.fail(`${missing.join(' and ')} not installed (CI=true)`);
  const r = await runConformance({ mode: 'process', concurrency: 2, only: RAW_ROWS_AND_COLUMNS, tcpFastpath: 'off' });
  checkOffRun(t, r, processResult);
  t.log(`raw path off: ${summaryLine(r)} in ${(r.durationMs / 1000).toFixed(1)} s; ${pathLine(r)}`);
});

// The raw path's rows and columns once more with compiled listeners off
// (L7MP_COMPILED=off): every TCP and Unix stream connection decided in
// JavaScript, as before the addon set connections up itself. Same cases, all
// passing, none on a compiled listener; the default run had some.
run('conformance: TCP and UnixDomainSocket rows and columns with L7MP_COMPILED=off, process mode, same cases on the raw path decided in JavaScript, 0 failed', async (t) => {
  t.timeout(600_000, 'the raw path rows and columns did not finish in 10 minutes');
  if (missing.length > 0) t.fail(`${missing.join(' and ')} not installed (CI=true)`);
  const r = await runConformance({ mode: 'process', concurrency: 2, only: RAW_ROWS_AND_COLUMNS, tcpFastpath: 'on', compiled: 'off' });
  const failures = casesWith(r, 'fail');
  if (failures.length > 0) t.log(renderText(r));
  t.deepEqual(failures, [], summaryLine(r));
  t.is(compiledCases(r), 0, 'no session on a compiled listener');
  t.true(pathChecks(r).raw > 0, 'the raw path was checked');
  if (processResult === undefined) {
    t.fail('the default run did not complete, so there is nothing to compare against');
    return;
  }
  t.true(compiledCases(processResult) > 0, 'the default run had sessions on compiled listeners');
  const ran = (x: RunResult) => [...casesWith(x, 'pass'), ...casesWith(x, 'fail')].sort();
  t.deepEqual(ran(r), ranOn(processResult, r), 'the same cases as the default run');
  t.log(`compiled off: ${summaryLine(r)} in ${(r.durationMs / 1000).toFixed(1)} s; ${pathLine(r)}`);
});

// The same suite against a gateway with two data-plane worker processes
// (admin.workers via -w 2, docs/workers.md): listeners that share their port
// run in both, the others in one, and the REST API, sessions and counters the
// cases read go through the main process. Same cases as one worker, all passing.
run('conformance: with 2 data-plane workers (-w 2), process mode, runs the same cases as one worker, 0 failed', async (t) => {
  t.timeout(1_200_000, 'the conformance suite with 2 workers did not finish in 20 minutes');
  if (missing.length > 0) t.fail(`${missing.join(' and ')} not installed (CI=true)`);
  const r = await runConformance({ mode: 'process', concurrency: 2, gatewayCmd: `'${process.execPath}' '${GATEWAY_MAIN}' -c {config} -w 2`, tcpFastpath: 'on' });
  const failures = casesWith(r, 'fail');
  if (failures.length > 0) t.log(renderText(r));
  t.deepEqual(failures, [], summaryLine(r));
  t.true(r.passed > 0);
  if (processResult === undefined) {
    t.fail('the one-worker run did not complete, so there is nothing to compare against');
    return;
  }
  const ran = (x: RunResult): string[] => [...casesWith(x, 'pass'), ...casesWith(x, 'fail')];
  t.deepEqual(ran(r).filter((c) => !ran(processResult!).includes(c)), [], 'ran with workers only');
  t.deepEqual(ran(processResult).filter((c) => !ran(r).includes(c)), [], 'ran with one worker, skipped with two');
  checkOnRun(t, r);
  t.log(`2 workers: ${summaryLine(r)} in ${(r.durationMs / 1000).toFixed(1)} s; ${pathLine(r)}`);
});

// Container mode needs a Docker engine: without one it is skipped with the
// reason on a developer machine, and fails under CI=true.
const dockerInfo = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 15_000 });
const noEngine = dockerInfo.status === 0 && dockerInfo.stdout.trim() !== ''
  ? undefined
  : `no Docker engine answers (${(dockerInfo.error?.message ?? dockerInfo.stderr ?? '').trim().split('\n').slice(-1)[0] || 'docker info failed'}); run 'bash scripts/setup-docker.sh'`;
const runContainer = (noEngine !== undefined || missing.length > 0) && !ci ? test.serial.skip : test.serial;
if (noEngine !== undefined && !ci) console.log(`conformance container mode: skipped, ${noEngine}`);

runContainer('conformance: container mode (gateway and peer images under testcontainers) runs the same cases as process mode, all passing', async (t) => {
  t.timeout(1_200_000, 'container-mode conformance did not finish in 20 minutes');
  if (noEngine !== undefined) t.fail(`${noEngine} (CI=true)`);
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  const r = await runConformance({ mode: 'container', concurrency: 2, tcpFastpath: 'on' });
  containerResult = r;
  const text = renderText(r);
  const failures = casesWith(r, 'fail');
  if (failures.length > 0) t.log(text);
  t.deepEqual(failures, [], summaryLine(r));
  t.true(r.passed > 0);
  if (processResult === undefined) {
    t.fail('the process-mode run did not complete, so there is nothing to compare against');
    return;
  }
  // Same cases: every case that ran in processes ran in containers, and
  // nothing more (a process-mode failure is that test's to report; here
  // only the container run has to be all passes).
  const ran = (x: RunResult): string[] => [...casesWith(x, 'pass'), ...casesWith(x, 'fail')];
  const inProcess = ran(processResult);
  const inContainers = ran(r);
  t.deepEqual(inContainers.filter((c) => !inProcess.includes(c)), [], 'ran in containers only');
  t.deepEqual(inProcess.filter((c) => !inContainers.includes(c)), [], 'ran in processes, skipped in containers');
  checkOnRun(t, r);
  t.log(`container mode: ${summaryLine(r)} in ${(r.durationMs / 1000).toFixed(1)} s; ${pathLine(r)}`);
});

runContainer('conformance: TCP and UnixDomainSocket rows and columns with L7MP_TCP_FASTPATH=off, container mode, same cases on the net.Socket path, 0 failed', async (t) => {
  t.timeout(600_000, 'the raw path rows and columns in containers did not finish in 10 minutes');
  if (noEngine !== undefined) t.fail(`${noEngine} (CI=true)`);
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  const r = await runConformance({ mode: 'container', concurrency: 2, only: RAW_ROWS_AND_COLUMNS, tcpFastpath: 'off' });
  checkOffRun(t, r, containerResult);
  t.log(`container mode, raw path off: ${summaryLine(r)} in ${(r.durationMs / 1000).toFixed(1)} s; ${pathLine(r)}`);
});
