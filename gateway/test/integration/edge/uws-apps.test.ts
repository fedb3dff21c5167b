// uWebSockets.js never frees an App, so HTTP and WebSocket listeners that come
// and go over REST reuse their Apps (protocols/common/uws-pool.ts). Reuse must
// be invisible: each listener serves its own routes (HTTPS ones the certificate
// their files hold now), and a connection that a deleted listener accepted is
// closed, never handed to the next user of its App.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { httpApps } from '../../../src/protocols/http/listener.js';
import { wsApps } from '../../../src/protocols/websocket/listener.js';
import { api, freePort, startGw, waitFor } from '../helpers.js';
import { httpRequest, slowHttpUpstream, tcpEchoUpstream, wsEcho } from './edge-helpers.js';

const cluster = (name: string, protocol: string, port: number) => ({ name, spec: { protocol, port }, endpoints: [{ spec: { address: '127.0.0.1' } }] });
const listener = (name: string, spec: Record<string, unknown>, destination: string) => ({ name, spec: { address: '127.0.0.1', ...spec }, rules: [{ action: { route: { destination } } }] });

test.serial('HTTP and WebSocket listeners added and deleted over REST reuse one App each, and every one serves its own route', async (t) => {
  t.timeout(60_000);
  const upA = await slowHttpUpstream(t, 0, (req) => `A ${req.url}`);
  const upB = await slowHttpUpstream(t, 0, (req) => `B ${req.url}`);
  const tcpUp = await tcpEchoUpstream(t);
  const { base } = await startGw(t, { clusters: [cluster('up-a', 'HTTP', upA.port), cluster('up-b', 'HTTP', upB.port), cluster('tcp-echo', 'TCP', tcpUp.port)] });
  const made = { http: httpApps.made, ws: wsApps.made };
  for (let i = 0; i < 10; i++) {
    const up = i % 2 === 0 ? 'A' : 'B';
    const [hp, wp] = [await freePort(), await freePort()];
    const add = await api(base, 'POST', '/api/v1/config', {
      listeners: [
        listener(`h${i}`, { protocol: 'HTTP', port: hp }, up === 'A' ? 'up-a' : 'up-b'),
        listener(`w${i}`, { protocol: 'WebSocket', port: wp }, 'tcp-echo'),
      ],
    });
    t.is(add.status, 200, add.text);
    const got = await httpRequest(`http://127.0.0.1:${hp}/r${i}`).outcome;
    t.is(`${got.status} ${got.body.toString()}`, `200 ${up} /r${i}`, `listener h${i}`);
    t.is(await wsEcho(wp, `m${i}`), `m${i}`, `listener w${i}`);
    for (const name of [`h${i}`, `w${i}`]) t.is((await api(base, 'DELETE', `/api/v1/listeners/${name}`)).status, 200);
    // An App goes back once its sockets are closed (after the turn that answered).
    await waitFor(() => (httpApps.waiting > 0 && wsApps.waiting > 0) || undefined, 5000, `h${i} and w${i} to give their Apps back`);
  }
  t.is(httpApps.made - made.http, 1, 'HTTP listeners made one App between them');
  t.is(wsApps.made - made.ws, 1, 'WebSocket listeners made one App between them');
  // Two at once need two Apps; a different message size needs its own.
  const ports = [await freePort(), await freePort(), await freePort()];
  t.is((await api(base, 'POST', '/api/v1/config', {
    listeners: [
      listener('h-x', { protocol: 'HTTP', port: ports[0] }, 'up-a'),
      listener('h-y', { protocol: 'HTTP', port: ports[1] }, 'up-b'),
      listener('w-big', { protocol: 'WebSocket', port: ports[2], max_message_size: 4096 }, 'tcp-echo'),
    ],
  })).status, 200);
  t.is(httpApps.made - made.http, 2);
  t.is(wsApps.made - made.ws, 2);
  t.is((await httpRequest(`http://127.0.0.1:${ports[0]}/x`).outcome).body.toString(), 'A /x');
  t.is((await httpRequest(`http://127.0.0.1:${ports[1]}/y`).outcome).body.toString(), 'B /y');
  t.is(await wsEcho(ports[2], 'big'), 'big');
});

test.serial('a kept-alive connection of a deleted HTTP listener is closed; the listener that takes its App over never answers it', async (t) => {
  const upA = await slowHttpUpstream(t, 0, () => 'from A');
  const upB = await slowHttpUpstream(t, 0, () => 'from B');
  const { base } = await startGw(t, { clusters: [cluster('up-a', 'HTTP', upA.port), cluster('up-b', 'HTTP', upB.port)] });
  const [pa, pb] = [await freePort(), await freePort()];
  t.is((await api(base, 'POST', '/api/v1/listeners', { listener: listener('a', { protocol: 'HTTP', port: pa }, 'up-a') })).status, 200);
  const sock = net.connect(pa, '127.0.0.1');
  let received = '';
  sock.on('data', (d) => { received += d.toString(); });
  sock.on('error', () => undefined); // a reset is one of the outcomes the test accepts
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.write('GET /1 HTTP/1.1\r\nhost: a\r\n\r\n');
  await waitFor(() => received.includes('from A') || undefined, 5000, 'the first answer, from A');
  const waitingBefore = httpApps.waiting;
  t.is((await api(base, 'DELETE', '/api/v1/listeners/a')).status, 200);
  await waitFor(() => httpApps.waiting > waitingBefore || undefined, 5000, 'listener a to give its App back');
  const made = httpApps.made;
  t.is((await api(base, 'POST', '/api/v1/listeners', { listener: listener('b', { protocol: 'HTTP', port: pb }, 'up-b') })).status, 200);
  t.is(httpApps.made, made, 'listener b took the App of listener a');
  if (!sock.destroyed) sock.write('GET /2 HTTP/1.1\r\nhost: a\r\n\r\n');
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the kept-alive connection of the deleted listener stayed open')), 5000))]);
  t.false(received.includes('from B'), `the old connection got: ${JSON.stringify(received)}`);
  t.is((await httpRequest(`http://127.0.0.1:${pb}/3`).outcome).body.toString(), 'from B');
});

test.serial('a WebSocket of a deleted listener is closed with 1001 before its App serves the next listener', async (t) => {
  const tcpUp = await tcpEchoUpstream(t);
  const { base } = await startGw(t, { clusters: [cluster('tcp-echo', 'TCP', tcpUp.port)] });
  const [pa, pb] = [await freePort(), await freePort()];
  t.is((await api(base, 'POST', '/api/v1/listeners', { listener: listener('wa', { protocol: 'WebSocket', port: pa }, 'tcp-echo') })).status, 200);
  const ws = new WebSocket(`ws://127.0.0.1:${pa}/`);
  const code = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  const waitingBefore = wsApps.waiting;
  t.is((await api(base, 'DELETE', '/api/v1/listeners/wa')).status, 200);
  t.is(await code, 1001);
  await waitFor(() => wsApps.waiting > waitingBefore || undefined, 5000, 'listener wa to give its App back');
  const made = wsApps.made;
  t.is((await api(base, 'POST', '/api/v1/listeners', { listener: listener('wb', { protocol: 'WebSocket', port: pb }, 'tcp-echo') })).status, 200);
  t.is(wsApps.made, made, 'listener wb took the App of listener wa');
  t.is(await wsEcho(pb, 'hello'), 'hello');
  // The old port is closed with it.
  await t.throwsAsync(wsEcho(pa, 'x'));
});

/** The certificate an HTTPS listener presents (compared by fingerprint, not trusted), and its answer to one GET. */
function httpsGet(port: number, urlPath: string): Promise<{ fingerprint: string; text: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
    let text = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer from ${port} within 5 s: ${JSON.stringify(text)}`)); }, 5000);
    s.once('secureConnect', () => s.write(`GET ${urlPath} HTTP/1.1\r\nHost: localhost\r\n\r\n`));
    s.on('data', (d) => {
      text += String(d);
      if (!/\r\n\r\n[\s\S]*\S/.test(text)) return;
      clearTimeout(timer);
      const fingerprint = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve({ fingerprint, text });
    });
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

interface Pem { cert: Buffer; key: Buffer; fingerprint: string }

/**
 * Two self-signed certificates (openssl, which scripts/setup-host.sh
 * installs), and the one pair of files listeners use, whose contents
 * `install` rotates.
 */
function rotatingCerts(t: ExecutionContext): { dir: string; pems: Pem[]; files: { cert_file: string; key_file: string }; install(n: 0 | 1): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-apps-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pems: Pem[] = [];
  for (const n of [1, 2]) {
    const [key, cert] = [path.join(dir, `key${n}.pem`), path.join(dir, `cert${n}.pem`)];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-days', '1', '-nodes', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'pipe' });
    pems.push({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), fingerprint: new X509Certificate(fs.readFileSync(cert)).fingerprint256 });
  }
  const files = { cert_file: path.join(dir, 'tls.crt'), key_file: path.join(dir, 'tls.key') };
  const install = (n: 0 | 1) => { fs.writeFileSync(files.cert_file, pems[n]!.cert); fs.writeFileSync(files.key_file, pems[n]!.key); };
  install(0);
  return { dir, pems, files, install };
}

/** The admin section of a gateway whose REST API may name TLS files under `dir`. */
const tlsAdmin = (dir: string) => ({ log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 }, file_root: dir });

/** Add `l` on a free port, `check` what it serves, delete it, and wait for its App to go back to `pool`. */
async function tlsRound(t: ExecutionContext, base: string, pool: { waiting: number }, l: { name: string; spec: Record<string, unknown> }, check: (port: number) => Promise<void>): Promise<void> {
  const port = await freePort();
  const add = await api(base, 'POST', '/api/v1/listeners', { listener: { ...l, spec: { ...l.spec, port } } });
  t.is(add.status, 200, add.text);
  await check(port);
  const waiting = pool.waiting;
  t.is((await api(base, 'DELETE', `/api/v1/listeners/${l.name}`)).status, 200);
  await waitFor(() => pool.waiting > waiting || undefined, 5000, `${l.name} to give its App back`);
}

test.serial('HTTPS listeners reuse an App while their files hold the same certificate; a rotated certificate gets an App of its own', async (t) => {
  t.timeout(60_000);
  const c = rotatingCerts(t);
  const up = await slowHttpUpstream(t, 0, (req) => `up ${req.url}`);
  const { base } = await startGw(t, { admin: tlsAdmin(c.dir), clusters: [cluster('up', 'HTTP', up.port)] });
  const made = httpApps.made;
  const round = (name: string, cert: 0 | 1) => tlsRound(t, base, httpApps, listener(name, { protocol: 'HTTP', tls: c.files }, 'up'), async (port) => {
    const got = await httpsGet(port, `/${name}`);
    t.is(got.fingerprint, c.pems[cert]!.fingerprint, `${name} presents certificate ${cert + 1}`);
    t.regex(got.text, new RegExp(`^HTTP/1\\.1 200 [\\s\\S]*up /${name}`), name);
  });
  for (let i = 0; i < 4; i++) await round(`s${i}`, 0);
  t.is(httpApps.made - made, 1, 'four HTTPS listeners on unchanged files made one App between them');
  c.install(1);
  await round('rotated', 1);
  t.is(httpApps.made - made, 2, 'the rotated certificate made an App of its own');
  c.install(0);
  await round('back', 0);
  t.is(httpApps.made - made, 2, 'the first certificate again takes its waiting App');
});

/** One message over wss: (the certificate compared by fingerprint, not trusted): the echo, the certificate, the session's URL scheme. */
function wssEcho(port: number, text: string): Promise<{ echo: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/`, { rejectUnauthorized: false });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no echo from ${port} within 5 s`)); }, 5000);
    ws.on('open', () => ws.send(text));
    ws.on('message', (m) => {
      clearTimeout(timer);
      const fingerprint = ((ws as unknown as { _socket: tls.TLSSocket })._socket).getPeerCertificate().fingerprint256;
      ws.close();
      resolve({ echo: String(m), fingerprint });
    });
    ws.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

test.serial('a WebSocket listener with tls serves wss: with the certificate its files hold, reusing its App while they are unchanged; engine ws and files outside file_root are refused; the ws bounds and a delete\'s 1001 hold behind TLS', async (t) => {
  t.timeout(60_000);
  const c = rotatingCerts(t);
  const tcpUp = await tcpEchoUpstream(t);
  const { base } = await startGw(t, { admin: tlsAdmin(c.dir), clusters: [cluster('tcp-echo', 'TCP', tcpUp.port)] });
  const made = wsApps.made;
  const round = (name: string, cert: 0 | 1) => tlsRound(t, base, wsApps, listener(name, { protocol: 'WebSocket', tls: c.files }, 'tcp-echo'), async (port) => {
    const got = await wssEcho(port, `m-${name}`);
    t.deepEqual(got, { echo: `m-${name}`, fingerprint: c.pems[cert]!.fingerprint }, `${name} echoes over wss with certificate ${cert + 1}`);
    // Plain ws: on the wss port gets no upgrade.
    await t.throwsAsync(wsEcho(port, 'plain'), undefined, `${name} answered plain ws:`);
  });
  for (let i = 0; i < 3; i++) await round(`wss${i}`, 0);
  t.is(wsApps.made - made, 1, 'three wss listeners on unchanged files made one App between them');
  c.install(1);
  await round('wss-rotated', 1);
  t.is(wsApps.made - made, 2, 'the rotated certificate made an App of its own');
  const before = (await api(base, 'GET', '/api/v1/config')).text;
  const port = await freePort();
  const wsEngine = await api(base, 'POST', '/api/v1/listeners', { listener: listener('wss-ws', { protocol: 'WebSocket', port, engine: 'ws', tls: c.files }, 'tcp-echo') });
  t.is(wsEngine.status, 400, wsEngine.text);
  t.is((wsEngine.body as { field?: string }).field, 'listener.spec.engine');
  const outside = await api(base, 'POST', '/api/v1/listeners', { listener: listener('wss-out', { protocol: 'WebSocket', port, tls: { cert_file: '/etc/ssl/l7mp-none.pem', key_file: c.files.key_file } }, 'tcp-echo') });
  t.is(outside.status, 403, outside.text);
  t.is((await api(base, 'GET', '/api/v1/config')).text, before, 'the refused listeners changed nothing');

  // The edge on wss: the ws bounds hold behind TLS, one client's bad input ends its own connection
  // only, and a delete closes the others with 1001 rather than dropping them silently.
  const ep = await freePort();
  t.is((await api(base, 'POST', '/api/v1/listeners', { listener: listener('wss-edge', { protocol: 'WebSocket', port: ep, max_message_size: 1024, tls: c.files }, 'tcp-echo') })).status, 200);
  const open = async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${ep}/`, { rejectUnauthorized: false });
    ws.on('error', () => undefined);
    const code = new Promise<number>((resolve) => ws.once('close', (cc) => resolve(cc)));
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('unexpected-response', () => reject(new Error('no upgrade'))); });
    t.teardown(() => ws.terminate());
    return { ws, code };
  };
  const [big, other] = [await open(), await open()];
  // Not TLS at all on the port: that connection goes, nothing else does.
  await new Promise<void>((resolve) => {
    const raw = net.connect(ep, '127.0.0.1', () => raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    raw.on('error', () => resolve());
    raw.on('close', () => resolve());
  });
  big.ws.send(Buffer.alloc(4096));
  const bigCode = await big.code;
  t.true(bigCode === 1009 || bigCode === 1006, `an oversized message closed its connection with ${bigCode}`);
  const echoed = new Promise<string>((resolve) => other.ws.once('message', (m) => resolve(String(m))));
  other.ws.send('still here');
  t.is(await echoed, 'still here', 'the other wss client is untouched');
  t.is((await api(base, 'DELETE', '/api/v1/listeners/wss-edge')).status, 200);
  t.is(await other.code, 1001, 'a delete closes a live wss session with 1001');
});
