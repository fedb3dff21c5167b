// The REST API is confined (issue 13, faults 12-18): what a REST client may
// name on the host (files, sockets, raw interfaces, stdio), where it may
// expose the API, and which objects it may delete. Each test drives a real
// in-process gateway over real HTTP.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { api, controllerConfig, freePort, startGw, tcpListening, waitFor } from '../helpers.js';
import { startGateway } from '../../../src/app.js';
import { findProtocol } from '../../../src/protocols/registry.js';
import { silentLogger } from '../../../src/observe/log.js';

/** admin for test gateways (no metrics listener, no REST rate limit), plus `extra`. */
function admin(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 }, ...extra };
}

function tmpDir(t: { teardown(fn: () => unknown): void }, tag: string): string {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `l7mp-confine-${tag}-`)));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** The files this process holds open (the gateway runs in it). */
function openFiles(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try { out.push(fs.readlinkSync(`/proc/self/fd/${fd}`)); } catch { /* closed meanwhile */ }
  }
  return out;
}

const logger = (name: string, logFile: string): unknown => ({ cluster: { name, spec: { protocol: 'Logger', log_file: logFile } } });

// With workers (confine-workers.test.ts) each gateway is three processes: one at a time on a small machine.
const it = process.env.L7MP_TEST_WORKERS ? test.serial : test;

it('fault 12: a Logger over REST names files only under admin.file_root; a refused call opens nothing; delete closes the file', async (t) => {
  const outside = tmpDir(t, 'outside');
  const root = tmpDir(t, 'root');
  // Without file_root, REST may name no file at all.
  const plain = await startGw(t, { admin: admin() });
  const r0 = await api(plain.base, 'POST', '/api/v1/clusters', logger('lg', path.join(outside, 'any.log')));
  t.is(r0.status, 403, r0.text);
  t.regex(r0.body.content, /file_root/);
  t.false(fs.existsSync(path.join(outside, 'any.log')));
  // stdout and stderr are streams, not files: still allowed.
  t.is((await api(plain.base, 'POST', '/api/v1/clusters', logger('lg-stderr', 'stderr'))).status, 200);

  const g = await startGw(t, { admin: admin({ file_root: root }) });
  fs.symlinkSync(outside, path.join(root, 'escape'));
  for (const bad of [path.join(outside, 'x.log'), '../x.log', `${root}/../x.log`, 'escape/x.log', path.join(root, 'escape', 'x.log')]) {
    const r = await api(g.base, 'POST', '/api/v1/clusters', logger('lg', bad));
    t.is(r.status, 403, `${bad}: ${r.text}`);
  }
  t.deepEqual(fs.readdirSync(outside), [], 'nothing was created outside the root');
  // A dangling link inside the root would be followed on create.
  fs.symlinkSync(path.join(outside, 'target.log'), path.join(root, 'dangling.log'));
  t.is((await api(g.base, 'POST', '/api/v1/clusters', logger('lg', 'dangling.log'))).status, 403);
  t.false(fs.existsSync(path.join(outside, 'target.log')));

  // A rejected call (the second object is bad) neither creates nor opens the Logger's file.
  const file = path.join(root, 'ingress.log');
  const before = openFiles().filter((f) => f === file).length;
  const rej = await api(g.base, 'POST', '/api/v1/config', {
    clusters: [{ name: 'lg', spec: { protocol: 'Logger', log_file: file } }, { name: 'bad', spec: { protocol: 'NoSuchProtocol' } }],
  });
  t.is(rej.status, 400, rej.text);
  t.false(fs.existsSync(file), 'a refused call created the log file');
  t.is(openFiles().filter((f) => f === file).length, before, 'a refused call left the log file open');

  // Accepted inside the root: the file is open while the Logger exists, closed once it is deleted.
  const ok = await api(g.base, 'POST', '/api/v1/clusters', logger('lg', 'ingress.log'));
  t.is(ok.status, 200, ok.text);
  t.true(fs.existsSync(file));
  t.true(openFiles().includes(file));
  t.is((await api(g.base, 'GET', '/api/v1/clusters/lg')).body.spec.log_file, file, 'the dump shows the resolved path');
  t.is((await api(g.base, 'DELETE', '/api/v1/clusters/lg')).status, 200);
  await waitFor(() => !openFiles().includes(file), 3000, 'the deleted Logger closed its file');
  t.false(openFiles().includes(file), 'no descriptor of the deleted Logger\'s file is left');
});

it('fault 13: AF_PACKET listeners and clusters and Stdio clusters are static-config only (403 over REST)', async (t) => {
  const g = await startGw(t, { admin: admin() });
  const port = await freePort();
  const calls: Array<[string, unknown, string]> = [
    ['/api/v1/listeners', { listener: { name: 'pkt', spec: { protocol: 'AF_PACKET', interface: 'lo', ethertype: 0x0800 }, rules: [{ action: { route: { destination: { name: 'd', spec: { protocol: 'Discard' } } } } }] } }, 'listener.spec.protocol'],
    ['/api/v1/clusters', { cluster: { name: 'pc', spec: { protocol: 'AF_PACKET', ethertype: 0x0800 }, endpoints: [{ spec: { address: 'lo' } }] } }, 'cluster.spec.protocol'],
    ['/api/v1/clusters', { cluster: { name: 'io', spec: { protocol: 'Stdio' } } }, 'cluster.spec.protocol'],
    ['/api/v1/listeners', { listener: { name: 'js', spec: { protocol: 'JSONSocket', transport: { protocol: 'AF_PACKET', interface: 'lo', ethertype: 0x0800 } }, rules: [] } }, 'listener.spec.transport.protocol'],
    // Inline in a route too.
    ['/api/v1/listeners', { listener: { name: 'tcp-stdio', spec: { protocol: 'TCP', address: '127.0.0.1', port }, rules: [{ action: { route: { destination: { name: 'io2', spec: { protocol: 'Stdio' } } } } }] } }, 'listener.rules[0].action.route.destination.spec.protocol'],
  ];
  const before = await api(g.base, 'GET', '/api/v1/config');
  for (const [url, body, field] of calls) {
    const r = await api(g.base, 'POST', url, body);
    t.is(r.status, 403, r.text);
    t.is(r.body.code, 'FORBIDDEN');
    t.is(r.body.field, field);
    t.regex(r.body.content, /static config/);
  }
  t.deepEqual((await api(g.base, 'GET', '/api/v1/config')).body, before.body, 'the refused calls changed nothing');
  t.false(await tcpListening(port));
});

/** A unix socket file nobody listens on (left by a crashed process). */
function staleSocket(p: string): void {
  const r = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', p]);
  if (r.status !== 0 || !fs.lstatSync(p).isSocket()) throw new Error(`cannot make a stale socket: ${String(r.stderr)}`);
}

it('fault 14: UnixDomainSocket and PIPE paths over REST stay under admin.file_root; stale sockets elsewhere are not unlinked', async (t) => {
  const outside = tmpDir(t, 'outside');
  const root = tmpDir(t, 'root');
  const stale = path.join(outside, 'stale.sock');
  staleSocket(stale);
  const discard = [{ action: { route: { destination: { name: 'dc', spec: { protocol: 'Discard' } } } } }];
  for (const cfg of [admin(), admin({ file_root: root })]) {
    const g = await startGw(t, { admin: cfg });
    const bad: Array<[string, unknown]> = [
      ['/api/v1/listeners', { listener: { name: 'u', spec: { protocol: 'UnixDomainSocket', filename: stale }, rules: discard } }],
      ['/api/v1/listeners', { listener: { name: 'u', spec: { protocol: 'UnixDomainSocket', filename: path.join(outside, 'new.sock') }, rules: discard } }],
      ['/api/v1/listeners', { listener: { name: 'p', spec: { protocol: 'PIPE', filename: path.join(outside, 'in.fifo') }, rules: discard } }],
      ['/api/v1/listeners', { listener: { name: 'p', spec: { protocol: 'PIPE', filename: path.join(root, 'in.fifo'), reply_filename: path.join(outside, 'out.fifo') }, rules: discard } }],
      ['/api/v1/listeners', { listener: { name: 'ud', spec: { protocol: 'UNIX/dgram', filename: path.join(outside, 'd.sock') }, rules: discard } }],
      ['/api/v1/clusters', { cluster: { name: 'uc', spec: { protocol: 'UnixDomainSocket' }, endpoints: [{ spec: { address: stale } }] } }],
      ['/api/v1/clusters', { cluster: { name: 'pc', spec: { protocol: 'PIPE' }, endpoints: [{ spec: { address: path.join(outside, 'x.fifo') } }] } }],
      ['/api/v1/listeners', { listener: { name: 'js', spec: { protocol: 'JSONSocket', transport: { protocol: 'UNIX/dgram', filename: path.join(outside, 'j.sock') } }, rules: discard } }],
    ];
    for (const [url, body] of bad) {
      // Without the native addon UNIX/dgram is refused earlier, as unavailable.
      if (JSON.stringify(body).includes('UNIX/dgram') && findProtocol('UNIX/dgram')?.unavailable) continue;
      const r = await api(g.base, 'POST', url, body);
      t.is(r.status, 403, `${JSON.stringify(body)}: ${r.text}`);
    }
    t.true(fs.lstatSync(stale).isSocket(), 'the stale socket outside the root is still there');
    t.deepEqual(fs.readdirSync(outside).sort(), ['stale.sock'], 'nothing was created outside the root');
  }
  // Inside the root a REST listener works, and its stale socket is cleared.
  const g = await startGw(t, { admin: admin({ file_root: root }) });
  // A call refused at bind time (the second listener's port is taken) leaves no FIFO behind.
  const taken = Number(new URL(g.base).port);
  const rolled = await api(g.base, 'POST', '/api/v1/config', {
    listeners: [
      { name: 'p', spec: { protocol: 'PIPE', filename: 'in.fifo' }, rules: discard },
      { name: 't', spec: { protocol: 'TCP', address: '127.0.0.1', port: taken }, rules: [{ action: { route: { destination: 'dc' } } }] },
    ],
  });
  t.is(rolled.status, 409, rolled.text);
  t.is(rolled.body.code, 'BIND_FAILED');
  if (!findProtocol('PIPE')?.unavailable) t.false(fs.existsSync(path.join(root, 'in.fifo')), 'a refused call left its FIFO');
  const inner = path.join(root, 'stale-inside.sock');
  staleSocket(inner);
  const r = await api(g.base, 'POST', '/api/v1/listeners', { listener: { name: 'u', spec: { protocol: 'UnixDomainSocket', filename: 'stale-inside.sock' }, rules: discard } });
  t.is(r.status, 200, r.text);
  await waitFor(() => new Promise<boolean>((res) => {
    const c = net.connect({ path: inner }, () => { c.destroy(); res(true); });
    c.on('error', () => res(false));
  }), 3000, 'the listener accepts on the cleared socket path');
});

/** One request on a kept-alive raw connection; resolves with the status line, or 'closed' when the server closed it first. */
function requestOn(sock: net.Socket, port: number, urlPath: string): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (v: string): void => { sock.off('data', onData); sock.off('close', onClose); resolve(v); };
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const head = buf.indexOf('\r\n\r\n');
      if (head < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, head))?.[1] ?? 0);
      if (buf.length >= head + 4 + len) done(buf.split('\r\n')[0]!);
    };
    const onClose = (): void => done('closed');
    sock.on('data', onData);
    sock.on('close', onClose);
    if (sock.destroyed) { done('closed'); return; }
    sock.write(`GET ${urlPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: keep-alive\r\n\r\n`);
  });
}

it('fault 15: a REST call may not expose the API beyond loopback without a token', async (t) => {
  const g = await startGw(t, { admin: admin() });
  const wide = await freePort();
  const ctl = (name: string, address: string, port: number): unknown => ({
    listener: { name, spec: { protocol: 'HTTP', address, port }, rules: [{ action: { route: { destination: 'controller' } } }] },
  });
  const r = await api(g.base, 'POST', '/api/v1/listeners', ctl('wide', '0.0.0.0', wide));
  t.is(r.status, 403, r.text);
  t.regex(r.body.content, /API token/);
  t.false(await tcpListening(wide));
  // A named rulelist that leads to the controller counts too.
  await api(g.base, 'POST', '/api/v1/rulelists', { rulelist: { name: 'to-api', rules: [{ action: { route: { destination: 'controller' } } }] } });
  const r2 = await api(g.base, 'POST', '/api/v1/listeners', { listener: { name: 'wide2', spec: { protocol: 'HTTP', port: wide }, rules: 'to-api' } });
  t.is(r2.status, 403, r2.text);
  t.false(await tcpListening(wide));
});

it('fault 15: the kept-alive connections of a deleted controller listener are closed, never served by a listener of the same name', async (t) => {
  const g = await startGw(t, { admin: admin() });
  const ctl = (name: string, address: string, port: number): unknown => ({
    listener: { name, spec: { protocol: 'HTTP', address, port }, rules: [{ action: { route: { destination: 'controller' } } }] },
  });
  // Loopback is fine; its kept-alive connection dies with it.
  const p1 = await freePort();
  t.is((await api(g.base, 'POST', '/api/v1/listeners', ctl('side', '127.0.0.1', p1))).status, 200);
  const sock = net.connect({ port: p1, host: '127.0.0.1' });
  t.teardown(() => sock.destroy());
  await new Promise((res) => sock.once('connect', res));
  t.regex(await requestOn(sock, p1, '/api/v1/listeners'), /^HTTP\/1.1 200/);
  const closed = new Promise((res) => sock.once('close', res));
  t.is((await api(g.base, 'DELETE', '/api/v1/listeners/side')).status, 200);
  // A listener of the same name comes back elsewhere: the old connection must not reach it.
  const p2 = await freePort();
  t.is((await api(g.base, 'POST', '/api/v1/listeners', ctl('side', '127.0.0.1', p2))).status, 200);
  const after = await requestOn(sock, p1, '/api/v1/listeners');
  t.false(after.includes(' 200'), `the deleted listener's connection still served the API: ${after}`);
  // Closed by the delete itself, well before uWS's 10 s idle timeout.
  await waitFor(() => sock.destroyed || sock.readyState === 'closed', 3000, 'the deleted listener\'s connection closed');
  await closed;
  t.true(sock.destroyed, 'the kept-alive connection of the deleted listener is gone');
});

it('fault 15: with an API token, a REST controller listener beyond loopback is accepted', async (t) => {
  const port = await freePort();
  const gw = await startGateway({ config: controllerConfig(port, { admin: admin({ api_token: 'confine-token' }) }), logger: silentLogger(), env: {} });
  t.teardown(() => gw.stop());
  const wide = await freePort();
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/listeners`, {
    method: 'POST',
    headers: { authorization: 'Bearer confine-token', 'content-type': 'application/json' },
    body: JSON.stringify({ listener: { name: 'wide', spec: { protocol: 'HTTP', address: '0.0.0.0', port: wide }, rules: [{ action: { route: { destination: 'controller' } } }] } }),
  });
  t.is(res.status, 200, await res.text());
});

it('fault 16: the controller\'s own objects cannot be deleted over REST; names ".", ".." and with control characters are refused', async (t) => {
  const g = await startGw(t, { admin: admin() });
  const cfg = (await api(g.base, 'GET', '/api/v1/config')).body;
  const ctl = cfg.listeners.find((l: { name: string }) => l.name === 'controller-listener');
  const rl: string = ctl.rules;
  const rule: string = (await api(g.base, 'GET', `/api/v1/rulelists/${rl}`)).body.rules[0];
  const route: string = (await api(g.base, 'GET', `/api/v1/rules/${rule}`)).body.action.route;
  for (const p of [
    '/api/v1/listeners/controller-listener', '/api/v1/listeners/controller-listener?recursive=true',
    `/api/v1/rulelists/${rl}`, `/api/v1/rules/${rule}`, `/api/v1/routes/${route}`, '/api/v1/clusters/controller',
    `/api/v1/rulelists/${rl}/rules/0`,
  ]) {
    const r = await api(g.base, 'DELETE', p);
    t.is(r.status, 409, `${p}: ${r.text}`);
    t.regex(r.body.content, /carries the REST API/);
  }
  // A rule inserted before the controller's would take its requests.
  const shadow = await api(g.base, 'POST', `/api/v1/rulelists/${rl}/rules/0`, { rule: { action: { route: { destination: { name: 'eat', spec: { protocol: 'Discard' } } } } } });
  t.is(shadow.status, 409, shadow.text);
  t.is((await api(g.base, 'GET', '/api/v1/listeners')).status, 200, 'the API still answers');

  const port = await freePort();
  for (const name of ['.', '..', 'x\u0001y', 'del\u007f', 'nul\u0000']) {
    const bodies: Array<[string, unknown]> = [
      ['/api/v1/listeners', { listener: { name, spec: { protocol: 'UDP', port }, rules: [] } }],
      ['/api/v1/clusters', { cluster: { name, spec: { protocol: 'Discard' } } }],
      ['/api/v1/rulelists', { rulelist: { name, rules: [] } }],
      ['/api/v1/rules', { rule: { name, action: { route: 'r' } } }],
      ['/api/v1/routes', { route: { name, destination: 'c' } }],
      // Embedded objects and the implicit names derived from them.
      ['/api/v1/routes', { route: { name: 'rt-ok', destination: { name, spec: { protocol: 'Discard' } } } }],
      ['/api/v1/clusters/controller/endpoints', { endpoint: { name, spec: { address: '127.0.0.1' } } }],
    ];
    for (const [url, body] of bodies) {
      const r = await api(g.base, 'POST', url, body);
      t.is(r.status, 400, `${JSON.stringify(name)} at ${url}: ${r.text}`);
    }
  }
  t.deepEqual((await api(g.base, 'GET', '/api/v1/config')).body, cfg, 'the refused calls changed nothing');
});

/** GET with a chosen Host header (fetch does not let one set it). */
function getWithHost(port: number, urlPath: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, headers: { host } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end();
  });
}

it('fault 17: a loopback API without a token answers only loopback Host names (DNS rebinding)', async (t) => {
  const g = await startGw(t, { admin: admin() });
  const port = Number(new URL(g.base).port);
  for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1.nip.io:${port}`, '10.0.0.1', 'localhost.evil.example']) {
    t.is(await getWithHost(port, '/api/v1/config', host), 403, host);
  }
  for (const host of [`localhost:${port}`, 'localhost', `127.0.0.1:${port}`, `127.1.2.3:${port}`, `[::1]:${port}`, '[::1]']) {
    t.is(await getWithHost(port, '/api/v1/config', host), 200, host);
  }
  t.true(g.gw.refusals.total('api_host') >= 5);
});

it('fault 18: a recursive delete of a listener whose route names the shared controller cluster keeps that cluster', async (t) => {
  const port = await freePort();
  const cfg = {
    admin: admin(),
    listeners: [{
      name: 'controller-listener',
      spec: { protocol: 'HTTP', address: '127.0.0.1', port },
      rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }],
    }],
  };
  const gw = await startGateway({ config: cfg, logger: silentLogger() });
  t.teardown(() => gw.stop());
  const base = `http://127.0.0.1:${port}`;
  const other = await freePort();
  const add = await api(base, 'POST', '/api/v1/listeners', {
    listener: { name: 'X', spec: { protocol: 'HTTP', address: '127.0.0.1', port: other }, rules: [{ action: { route: { destination: 'l7mp-controller' } } }] },
  });
  t.is(add.status, 200, add.text);
  t.is((await api(base, 'DELETE', '/api/v1/listeners/X?recursive=true')).status, 200);
  t.is((await api(base, 'GET', '/api/v1/clusters/l7mp-controller')).status, 200, 'the named shared cluster survived');
  const r = await api(base, 'GET', '/api/v1/config');
  t.is(r.status, 200, r.text);
  t.false(r.body.listeners.some((l: { name: string }) => l.name === 'X'));
});
