// UNIX/dgram and UNIX/seqpacket listeners and clusters, with socat peers.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { echo, freePort, nextMessage, peer, socat, spawnAsync, startGw, tmpPath, udpClient, waitFor } from './helpers.js';
import { needAddon, socatClient } from './native-helpers.js';

const isSocket = async (p: string): Promise<boolean> => fs.existsSync(p) && fs.lstatSync(p).isSocket();

function route(name: string, spec: Record<string, unknown>, endpoints: string[]): unknown {
  return [{ action: { route: { destination: { name, spec, endpoints: endpoints.map((a) => ({ spec: { address: a } })) } } } }];
}

test('UNIX/dgram listener: each datagram from a socat client reaches a UDP echo peer and comes back', async (t) => {
  if (!needAddon(t)) return;
  const port = await freePort();
  await peer(t, echo.udp(port));
  const lpath = tmpPath('l.sock');
  await startGw(t, {
    listeners: [{ name: 'ud', spec: { protocol: 'UNIX/dgram', filename: lpath }, rules: [{ action: { route: { destination: { name: 'u', spec: { protocol: 'UDP', port }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }] }],
  });
  t.true(await isSocket(lpath));
  const cpath = tmpPath('c.sock');
  const r = await socatClient(['-t', '2', '-', `UNIX-SENDTO:${lpath},bind=${cpath}`], 'hello over unix dgram');
  t.is(r.out.toString(), 'hello over unix dgram', r.err);
});

test('UNIX/dgram cluster: UDP datagrams go to a socat UNIX-RECVFROM echo peer, boundaries kept', async (t) => {
  if (!needAddon(t)) return;
  const ppath = tmpPath('peer.sock');
  await peer(t, socat(['-b', '65536', `UNIX-RECVFROM:${ppath},fork`, 'EXEC:cat'], () => isSocket(ppath)));
  const port = await freePort();
  await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: route('ud', { protocol: 'UNIX/dgram' }, [ppath]) }] });
  const c = await udpClient();
  t.teardown(() => c.close());
  for (const size of [1, 100, 1400, 9000]) {
    const msg = Buffer.alloc(size, size & 0xff);
    const got = await waitFor(async () => {
      c.send(msg, port, '127.0.0.1');
      return nextMessage(c, 1000).catch(() => undefined); // a lost first datagram is UDP's right: send again
    }, 8000, `echo of ${size} bytes`);
    t.is(got.byteLength, size);
    t.true(got.equals(msg));
  }
});

test('UNIX/dgram cluster: a path nobody is bound to fails the connect with the reason', async (t) => {
  if (!needAddon(t)) return;
  const ppath = tmpPath('nobody.sock');
  const port = await freePort();
  const { gw } = await startGw(t, {
    listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, options: { track: 30 }, rules: route('ud', { protocol: 'UNIX/dgram' }, [ppath]) }],
  });
  const c = await udpClient();
  t.teardown(() => c.close());
  c.send('x', port, '127.0.0.1');
  const s = await waitFor(() => [...gw.sessions.values()].find((x) => x.status === 'DESTROYED'), 10_000, 'a failed session');
  t.regex(JSON.stringify(s.events), /UNIX\/dgram .*nobody\.sock: (no such socket file|nobody is bound to it)/);
});

test('UNIX/dgram listener: a regular file in the way is a bind error, and the gateway keeps running', async (t) => {
  if (!needAddon(t)) return;
  const lpath = tmpPath('file');
  fs.writeFileSync(lpath, 'not a socket');
  const port = await freePort();
  // REST may name files only under admin.file_root.
  const { base } = await startGw(t, { admin: { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 }, file_root: path.dirname(lpath) } });
  const r = await fetch(`${base}/api/v1/listeners`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ listener: { name: 'bad', spec: { protocol: 'UNIX/dgram', filename: lpath }, rules: route('u', { protocol: 'UDP', port }, ['127.0.0.1']) } }),
  });
  const body = await r.json() as { content: string };
  t.true(r.status >= 400, JSON.stringify(body));
  t.regex(body.content, /not a socket/);
  t.is(fs.readFileSync(lpath, 'utf8'), 'not a socket');
});

test('UNIX/seqpacket listener to UNIX/seqpacket cluster: a socat seqpacket client through to a socat seqpacket echo peer', async (t) => {
  if (!needAddon(t)) return;
  const ppath = tmpPath('sp-peer.sock');
  // type=5 is SOCK_SEQPACKET
  await peer(t, socat([`UNIX-LISTEN:${ppath},type=5,fork`, 'EXEC:cat'], () => isSocket(ppath)));
  const lpath = tmpPath('sp-l.sock');
  await startGw(t, { listeners: [{ name: 'sp', spec: { protocol: 'UNIX/seqpacket', filename: lpath }, rules: route('spc', { protocol: 'UNIX/seqpacket' }, [ppath]) }] });
  t.true(await isSocket(lpath));
  const r = await socatClient(['-t', '2', '-', `UNIX-CONNECT:${lpath},type=5`], 'seqpacket round trip');
  t.is(r.out.toString(), 'seqpacket round trip', r.err);
});

test('without the addon the protocols are reported unavailable with the reason, and the gateway starts', async (t) => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const script = `
    const { protocolFor, findProtocol } = await import(${JSON.stringify(path.join(here, '../../src/protocols/registry.js'))});
    const { startGateway } = await import(${JSON.stringify(path.join(here, '../../src/app.js'))});
    const { silentLogger } = await import(${JSON.stringify(path.join(here, '../../src/observe/log.js'))});
    let msg = '';
    try { protocolFor('UNIX/dgram', 'listener', 'listener.spec.protocol'); } catch (e) { msg = e.code + ' ' + e.message; }
    const gw = await startGateway({ config: { admin: { log_level: 'silent', metrics: { enabled: false } } }, logger: silentLogger() });
    await gw.stop();
    console.log(JSON.stringify({ msg, pipe: findProtocol('PIPE').unavailable ?? 'available' }));
  `;
  const r = await spawnAsync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, L7MP_NATIVE: 'off' }, timeout: 20_000 });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { msg: string; pipe: string };
  t.regex(out.msg, /^NOT_SUPPORTED .*UNIX\/dgram.*unavailable.*L7MP_NATIVE=off/);
  t.is(out.pipe, 'available'); // PIPE needs the addon only to create FIFOs
});
