// The l7mp command as users run it: flags, config files, default config, logs.

import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { api, echo, freePort, tcpListening, tcpRoundTrip, tmpPath, waitFor } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const bin = path.join(root, 'dist/gateway/src/main.js');

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function startBin(args: string[]): { proc: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const proc = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => { out += String(d); });
  proc.stderr!.on('data', (d) => { out += String(d); });
  return {
    proc,
    output: () => out,
    stop: () => new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
    }),
  };
}

test('--help prints usage and exits 0', (t) => {
  const r = run(['--help']);
  t.is(r.status, 0);
  t.regex(r.stdout, /Usage: l7mp/);
  t.regex(r.stdout, /-c, --config FILE/);
});

test('an unknown flag prints usage and exits 2', (t) => {
  const r = run(['--frobnicate']);
  t.is(r.status, 2);
  t.regex(r.stderr, /Unknown option '--frobnicate'/);
  t.regex(r.stderr, /Usage: l7mp/);
});

test('a bad log level exits 2', (t) => {
  const r = run(['-l', 'chatty']);
  t.is(r.status, 2);
  t.regex(r.stderr, /unknown log level "chatty"/);
});

test('a missing config file exits 1 with the reason', (t) => {
  const r = run(['-c', '/nonexistent/l7mp.yaml']);
  t.is(r.status, 1);
  t.regex(r.stderr, /cannot read config file/);
});

test('an invalid config exits 1 naming the field', (t) => {
  const f = tmpPath('bad.json');
  fs.writeFileSync(f, JSON.stringify({ listeners: [{ name: 'x', spec: { protocol: 'TCP', port: 'abc' }, rules: [] }] }));
  const r = run(['-c', f]);
  t.is(r.status, 1);
  t.regex(r.stderr, /listeners\[0\]\.spec\.port/);
});

test('a config file with a self-referencing YAML alias exits 1 instead of hanging', (t) => {
  const f = tmpPath('cycle.yaml');
  fs.writeFileSync(f, 'listeners: &a\n  - name: x\n    spec: *a\n');
  const r = run(['-c', f]);
  t.is(r.status, 1);
  t.regex(r.stderr, /nested deeper than 64 levels/);
});

for (const ext of ['yaml', 'yml', 'json']) {
  test(`-c with a .${ext} file: UDP and TCP listeners proxy to echo servers`, async (t) => {
    const [ctl, tcpIn, tcpUp] = [await freePort(), await freePort(), await freePort()];
    const peer = await echo.tcp(tcpUp);
    t.teardown(() => peer.stop());
    const access = tmpPath('access.log');
    const cfg = {
      admin: { log_level: 'info', log_file: 'stdout', access_log_path: access },
      listeners: [
        { name: 'controller-listener', spec: { protocol: 'HTTP', port: ctl }, rules: [{ action: { route: { cluster: { spec: { protocol: 'L7mpController' } } } } }] },
        { name: 'tcp-listener', spec: { protocol: 'TCP', port: tcpIn }, rules: [{ action: { route: { destination: 'tcp-cluster' } } }] },
      ],
      clusters: [{ name: 'tcp-cluster', spec: { protocol: 'TCP', port: tcpUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    };
    const f = tmpPath(`l7mp.${ext}`);
    if (ext === 'json') fs.writeFileSync(f, JSON.stringify(cfg));
    else {
      const { stringify } = await import('yaml');
      fs.writeFileSync(f, stringify(cfg));
    }
    const gw = startBin(['-c', f, '-l', 'info']);
    t.teardown(() => gw.stop());
    await waitFor(() => tcpListening(tcpIn), 30_000, 'gateway listening');
    const payload = Buffer.from('hello through the gateway');
    const back = await tcpRoundTrip(tcpIn, payload);
    t.deepEqual(back, payload);
    // The controller bound loopback by default and answers.
    const r = await api(`http://127.0.0.1:${ctl}`, 'GET', '/api/v1/listeners');
    t.deepEqual(r.body.map((l: { name: string }) => l.name), ['controller-listener', 'tcp-listener']);
    t.is(r.body[0].spec.address, '127.0.0.1');
    // One access-log line per ended session, with its byte counts.
    // (The readiness probe above also made a session, one that carried no bytes.)
    const lines = await waitFor(() => {
      const all = fs.readFileSync(access, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const carried = all.filter((l) => l.listener === 'tcp-listener' && l.ingress_bytes > 0);
      return carried.length > 0 ? carried : undefined;
    }, 5000, 'access log line');
    t.is(lines.length, 1);
    const line = lines[0];
    t.is(line.ingress_bytes, payload.length);
    t.is(line.egress_bytes, payload.length);
    t.regex(gw.output(), /"msg":"l7mp gateway started"/);
  });
}

test('without -c the built-in default config serves the API on 127.0.0.1:1234 only', async (t) => {
  if (await tcpListening(1234)) t.fail('port 1234 is already taken by another process; stop it to run this test');
  const gw = startBin(['-l', 'warn']);
  t.teardown(() => gw.stop());
  const r = await waitFor(async () => {
    if (gw.proc.exitCode !== null) throw new Error(`gateway exited: ${gw.output()}`);
    return (await api('http://127.0.0.1:1234', 'GET', '/api/v1/config').catch(() => undefined));
  }, 30_000, 'default controller on 1234');
  if (!r) throw new Error('unreachable');
  t.is(r.status, 200);
  t.deepEqual(r.body.listeners.map((l: { name: string; spec: { address: string } }) => [l.name, l.spec.address]), [['controller-listener', '127.0.0.1']]);
  await gw.stop();
  t.is(gw.proc.signalCode === null ? gw.proc.exitCode : 0, 0, 'SIGTERM shuts down cleanly');
});

test('the example configs in config/ apply cleanly', async (t) => {
  for (const f of fs.readdirSync(path.join(root, 'config'))) {
    const { readConfigFile, startGateway } = await import('../../src/app.js');
    const { silentLogger } = await import('../../src/observe/log.js');
    const cfg = readConfigFile(path.join(root, 'config', f)) as { listeners: Array<{ spec: { port?: number } }> };
    // Move every listener to a free port so that the test never collides.
    for (const l of cfg.listeners) if (l.spec.port !== undefined) l.spec.port = await freePort();
    const gw = await startGateway({ config: cfg, logger: silentLogger() });
    t.true(gw.listeners.size >= 1, f);
    await gw.stop();
  }
});

test('--version and -v print the package version and exit 0', (t) => {
  const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  for (const flag of ['--version', '-v']) {
    const r = run([flag]);
    t.is(r.status, 0, flag);
    t.is(r.stdout, `${version}\n`, flag);
  }
});

test('--help lists every L7MP_* environment variable the gateway reads, one line each', (t) => {
  // Every variable named in the gateway's sources, as process.env.X or as a
  // *_ENV constant: a new one that --help does not list fails here.
  const named = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.includes(`${path.sep}generated${path.sep}`)) {
        const src = fs.readFileSync(p, 'utf8');
        for (const m of src.matchAll(/process\.env\.(L7MP_[A-Z0-9_]+)|_ENV = '(L7MP_[A-Z0-9_]+)'/g)) named.add((m[1] ?? m[2])!);
      }
    }
  };
  walk(path.join(root, 'gateway/src'));
  t.true(named.has('L7MP_API_TOKEN') && named.has('L7MP_NATIVE') && named.has('L7MP_UDP_BATCH'), [...named].join(', '));
  const help = run(['--help']).stdout;
  const envSection = help.slice(help.indexOf('Environment:'));
  for (const name of named) {
    const lines = envSection.split('\n').filter((l) => l.trim().startsWith(`${name} `));
    t.is(lines.length, 1, `${name} has one line in --help`);
    t.true((lines[0] ?? '').trim().length > name.length + 10, `${name} is described`);
  }
});

test('health: exit 0 when /ready answers 200, 1 while the gateway is not ready or not there', async (t) => {
  const [ctl, admin, ctl2, admin2] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const controller = (port: number) => ({ name: 'controller-listener', spec: { protocol: 'HTTP', port }, rules: [{ action: { route: { cluster: { spec: { protocol: 'L7mpController' } } } } }] });
  const ready = tmpPath('ready.json');
  fs.writeFileSync(ready, JSON.stringify({ admin: { log_level: 'warn', metrics: { port: admin } }, listeners: [controller(ctl)] }));
  // A managed gateway is not ready until the operator sets admin.generation: /ready answers 503.
  const waiting = tmpPath('managed.json');
  fs.writeFileSync(waiting, JSON.stringify({ admin: { log_level: 'warn', managed: true, metrics: { port: admin2 } }, listeners: [controller(ctl2)] }));

  const absent = run(['health', '--url', `http://127.0.0.1:${admin}/ready`]);
  t.is(absent.status, 1, 'nothing listens yet');
  t.regex(absent.stderr, /ECONNREFUSED/);

  const gw = startBin(['-c', ready]);
  t.teardown(() => gw.stop());
  const gw2 = startBin(['-c', waiting]);
  t.teardown(() => gw2.stop());
  await waitFor(() => tcpListening(admin), 30_000, 'admin listener');
  await waitFor(() => tcpListening(admin2), 30_000, 'managed admin listener');

  const ok = run(['health', '--url', `http://127.0.0.1:${admin}/ready`]);
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /ready/);
  // The URL from the environment when --url is not given.
  const fromEnv = spawnSync(process.execPath, [bin, 'health'], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, L7MP_HEALTH_URL: `http://127.0.0.1:${admin}/ready` } });
  t.is(fromEnv.status, 0, fromEnv.stderr);

  const notReady = run(['health', '--url', `http://127.0.0.1:${admin2}/ready`]);
  t.is(notReady.status, 1);
  t.regex(notReady.stderr, /answered 503 .*admin\.generation/);

  const bad = run(['health', '--frobnicate']);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /Unknown option '--frobnicate'/);
});
