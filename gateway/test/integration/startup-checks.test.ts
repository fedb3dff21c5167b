// What the gateway says about its static config at startup: the spec's
// schema, always; unknown admin keys in strict mode, routes to clusters that
// do not exist (strict: refused; otherwise a warning and a /ready reason),
// and the log format (text on a terminal, JSON elsewhere, admin.log_format
// or L7MP_LOG_FORMAT to choose).

import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { startGateway } from '../../src/app.js';
import { knownAdminKeys, unknownAdminKeys } from '../../src/config/admin-keys.js';
import { formatRecord, resolveLogFormat } from '../../src/observe/log-text.js';
import { api, captureLogger, controllerConfig, freePort, tmpPath, waitFor } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const bin = path.join(root, 'dist/gateway/src/main.js');

// ------------------------------------------------------- strict: admin keys

test('the known admin keys are the spec\'s Admin schema properties, not a list of our own', (t) => {
  const spec = parseYaml(fs.readFileSync(path.join(root, 'openapi/l7mp.yaml'), 'utf8'));
  t.deepEqual(knownAdminKeys(), Object.keys(spec.components.schemas.Admin.properties));
  // Every admin section the gateway reads is in the spec (or strict mode would refuse it).
  t.deepEqual(unknownAdminKeys({
    log_level: 'info', log_file: 'stdout', log_format: 'json', access_log_path: '/tmp/x', strict: true,
    metrics: { enabled: false, address: '127.0.0.1', port: 0, path: '/metrics' }, stdio_fork: { commands: [['/bin/cat']] },
    limits: { max_body_bytes: 1, max_sessions: 1, api_rate: 0, api_burst: 1 }, offload: 'disable', offload_ifs: [],
    api_token_file: '/run/t', managed: false,
  }), []);
  t.deepEqual(unknownAdminKeys({ log_levle: 'info', limits: { max_sesions: 1 }, metrics: { prot: 1 } }),
    ['admin.log_levle', 'admin.limits.max_sesions', 'admin.metrics.prot']);
});

test('strict mode (-s) refuses unknown admin keys, naming every one; without -s they are accepted', async (t) => {
  const port = await freePort();
  const config = controllerConfig(port, { admin: { log_levle: 'info', metrics: { enabled: false }, limits: { api_rate: 0, max_sesions: 5 } } });
  const err = await t.throwsAsync(startGateway({ config, strict: true, logger: captureLogger().log }));
  t.regex(err!.message, /admin\.log_levle/);
  t.regex(err!.message, /admin\.limits\.max_sesions/);
  t.regex(err!.message, /the admin settings are log_level, /);
  t.is((err as { field?: string }).field, 'admin.log_levle');
  t.false(await tcpBound(port), 'nothing was bound');

  const gw = await startGateway({ config, logger: captureLogger().log });
  t.teardown(() => gw.stop());
  t.is((await api(`http://127.0.0.1:${port}`, 'GET', '/api/v1/admin')).status, 200);
});

test('l7mp -s with a misspelt admin key exits 1 and names it', (t) => {
  const file = tmpPath('typo.json');
  fs.writeFileSync(file, JSON.stringify({ admin: { log_levle: 'info', metrics: false }, listeners: [] }));
  const r = spawnSync(process.execPath, [bin, '-s', '-c', file], { encoding: 'utf8', timeout: 10_000 });
  t.is(r.status, 1);
  t.regex(r.stderr, /cannot apply the configuration: admin\.log_levle: unknown admin setting admin\.log_levle \(strict mode\)/);
});

function tcpBound(port: number): Promise<boolean> {
  return api(`http://127.0.0.1:${port}`, 'GET', '/api/v1/admin').then(() => true, () => false);
}

// ------------------------------------------------- the schema, without -s

test('without -s the static config is still checked against the spec\'s schemas, before anything opens', async (t) => {
  const port = await freePort();
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ clusters: [{ name: 'u', spec: { protocol: 'UDP', port: 5000, address: 5 } }] }, 'clusters[0].spec.address'],
    [{ admin: { metrics: false, limits: { max_sessions: 1.5 } } }, 'admin.limits.max_sessions'],
    [{ admin: { metrics: false, strict: 'no' } }, 'admin.strict'],
  ];
  for (const [extra, field] of cases) {
    const err = await t.throwsAsync(startGateway({ config: controllerConfig(port, extra), logger: captureLogger().log }));
    t.is((err as { field?: string }).field, field, JSON.stringify(extra));
    t.false(await tcpBound(port), 'nothing was bound');
  }
});

test('a config saved from GET /config loads: its sessions (l7mp\'s session JSON) are not applied, so not checked', async (t) => {
  const port = await freePort();
  const session = {
    name: 's', metadata: {}, status: 'CONNECTED', events: [], ingress: [null], egress: [],
    source: { origin: 'x', listener: '<INVALID>', status: 'CONNECTED' }, destination: { status: 'PENDING' },
  };
  const gw = await startGateway({ config: controllerConfig(port, { admin: { metrics: false }, sessions: [session] }), logger: captureLogger().log });
  t.teardown(() => gw.stop());
  t.is((await api(`http://127.0.0.1:${port}`, 'GET', '/api/v1/admin')).status, 200);
});

// ------------------------------------------------ routes to missing clusters

function danglingConfig(apiPort: number, adminPort: number, udpPort: number): Record<string, unknown> {
  return controllerConfig(apiPort, {
    admin: { log_level: 'warn', metrics: { port: adminPort }, limits: { api_rate: 0 } },
    listeners: [{
      name: 'udp-in',
      spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort },
      rules: [{ action: { route: { name: 'to-nowhere', destination: 'no-such-cluster' } } }],
    }],
  });
}

test('a route to a cluster that does not exist: strict mode refuses to start, naming route and cluster', async (t) => {
  const [apiPort, adminPort, udpPort] = [await freePort(), await freePort(), await freePort()];
  const err = await t.throwsAsync(startGateway({ config: danglingConfig(apiPort, adminPort, udpPort), strict: true, logger: captureLogger().log }));
  t.regex(err!.message, /route "to-nowhere" sends to cluster "no-such-cluster", which does not exist/);
  t.false(await tcpBound(apiPort), 'stopped again: the controller is not left listening');
});

test('a route to a cluster that does not exist: without -s a warning, /ready 503 naming it, ready once the cluster is added', async (t) => {
  const [apiPort, adminPort, udpPort] = [await freePort(), await freePort(), await freePort()];
  const { log, lines } = captureLogger();
  const gw = await startGateway({ config: danglingConfig(apiPort, adminPort, udpPort), logger: log });
  t.teardown(() => gw.stop());
  const warn = lines.find((l) => l.level === 40 && l.route === 'to-nowhere');
  t.truthy(warn, 'a warning at startup');
  t.is(warn!.cluster, 'no-such-cluster');
  const ready = await api(`http://127.0.0.1:${adminPort}`, 'GET', '/ready');
  t.is(ready.status, 503);
  t.deepEqual(ready.body.reasons, ['route "to-nowhere" sends to cluster "no-such-cluster", which does not exist']);
  const add = await api(`http://127.0.0.1:${apiPort}`, 'POST', '/api/v1/clusters', { cluster: { name: 'no-such-cluster', spec: { protocol: 'Echo' } } });
  t.is(add.status, 200, add.text);
  const after = await api(`http://127.0.0.1:${adminPort}`, 'GET', '/ready');
  t.is(after.status, 200, after.text);
});

// --------------------------------------------------------------- log format

test('log format: L7MP_LOG_FORMAT wins over admin.log_format, which wins over the terminal check; bad values are errors', (t) => {
  t.is(resolveLogFormat('json', 'text', undefined), 'text');
  t.is(resolveLogFormat('text', undefined, '/var/log/x.log'), 'text');
  t.is(resolveLogFormat(undefined, undefined, '/var/log/x.log'), 'json', 'a file is no terminal');
  t.is(resolveLogFormat(undefined, '', '/var/log/x.log'), 'json', 'an empty variable is unset');
  t.throws(() => resolveLogFormat(undefined, 'pretty', undefined), { message: /L7MP_LOG_FORMAT: must be json or text, got "pretty"/ });
  t.throws(() => resolveLogFormat('yaml', undefined, undefined), { message: /admin\.log_format: must be json or text/ });
});

test('the text format: time, level, message, then the fields; an error\'s stack on the lines after', (t) => {
  const line = formatRecord(JSON.stringify({ level: 'warn', time: '2026-12-04T23:40:01.123Z', pid: 7, msg: 'bind failed', listener: 'udp in', port: 53 }));
  t.is(line, '2026-12-04T23:40:01.123Z WARN    bind failed listener="udp in" port=53\n');
  const withErr = formatRecord(JSON.stringify({ level: 'error', time: 't', msg: 'boom', err: { message: 'bad', stack: 'Error: bad\n    at x' } }));
  t.is(withErr, 't ERROR   boom err=bad\n    Error: bad\n        at x\n');
  t.is(formatRecord('not json'), 'not json\n', 'anything else passes through');
});

function runFor(args: string[], env: NodeJS.ProcessEnv, until: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(args[0]!, args.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`no ${until} in time: ${out}`)); }, 10_000);
    const on = (d: Buffer) => {
      out += String(d);
      if (until.test(out)) { clearTimeout(timer); p.kill('SIGTERM'); }
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.once('exit', () => { clearTimeout(timer); resolve(out); });
  });
}

test('the gateway logs JSON into a pipe and text with L7MP_LOG_FORMAT=text', async (t) => {
  const port = await freePort();
  const file = tmpPath('c.json');
  fs.writeFileSync(file, JSON.stringify(controllerConfig(port, { admin: { log_level: 'info', metrics: false } })));
  const json = await runFor([process.execPath, bin, '-c', file], { L7MP_LOG_FORMAT: '' }, /gateway started/);
  const started = json.split('\n').find((l) => l.includes('gateway started'))!;
  t.is(JSON.parse(started).msg, 'l7mp gateway started');
  const text = await runFor([process.execPath, bin, '-c', file], { L7MP_LOG_FORMAT: 'text' }, /gateway started/);
  t.regex(text, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {4}l7mp gateway started version=\S+ /m);
  t.false(text.split('\n').some((l) => l.startsWith('{')), 'no JSON line');
});

const hasScript = spawnSync('script', ['--version']).error === undefined;
(hasScript ? test : test.skip)('on a terminal the gateway logs text by default (run under script(1), which gives it a pty)', async (t) => {
  const port = await freePort();
  const file = tmpPath('c.json');
  fs.writeFileSync(file, JSON.stringify(controllerConfig(port, { admin: { log_level: 'info', metrics: false } })));
  const cmd = `'${process.execPath}' '${bin}' -c '${file}'`;
  const out = await runFor(['script', '-qfec', cmd, '/dev/null'], { L7MP_LOG_FORMAT: '', NO_COLOR: '1' }, /gateway started/);
  await waitFor(() => out.includes('gateway started'), 1000, 'the start line');
  t.regex(out, /INFO {4}l7mp gateway started/);
  t.false(out.includes('"msg":"l7mp gateway started"'));
});
