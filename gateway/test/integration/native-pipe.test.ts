// PIPE (named pipes) listener and cluster, with socat peers.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { echo, freePort, peer, socat, startGw, tmpPath, waitFor } from './helpers.js';
import { needAddon, socatClient } from './native-helpers.js';

function mkfifo(p: string): void {
  const r = spawnSync('mkfifo', ['-m', '600', p]);
  if (r.status !== 0) throw new Error(`mkfifo ${p}: ${String(r.stderr)}`);
}

/** Send over TCP and collect until `want` bytes came back (a FIFO peer never closes). */
function tcpCollect(port: number, payload: Buffer, want: number, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    let n = 0;
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`got ${n} of ${want} bytes`)); }, timeoutMs);
    c.on('data', (d: Buffer) => {
      parts.push(d);
      n += d.byteLength;
      if (n >= want) { clearTimeout(timer); c.destroy(); resolve(Buffer.concat(parts)); }
    });
    c.on('error', (e) => { clearTimeout(timer); reject(e); });
    c.on('connect', () => c.write(payload));
  });
}

test('PIPE listener: a writer into the FIFO gets a session to a TCP echo peer; the answer comes back on the reply FIFO', async (t) => {
  if (!needAddon(t)) return; // the listener creates its FIFOs with the addon's mkfifo
  const port = await freePort();
  await peer(t, echo.tcp(port));
  const inPath = tmpPath('in.fifo');
  const outPath = tmpPath('out.fifo');
  await startGw(t, {
    listeners: [{
      name: 'p', spec: { protocol: 'PIPE', filename: inPath, reply_filename: outPath },
      rules: [{ action: { route: { destination: { name: 'e', spec: { protocol: 'TCP', port }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
    }],
  });
  t.true(fs.statSync(inPath).isFIFO());
  t.true(fs.statSync(outPath).isFIFO());
  // The client reads the reply FIFO (opened read-write, so it never blocks) and writes the request FIFO.
  for (const text of ['first writer', 'second writer']) {
    const r = await socatClient(['-t', '2', '-', `OPEN:${outPath},rdwr!!OPEN:${inPath},wronly`], text);
    t.is(r.out.toString(), text, r.err);
  }
});

test('PIPE cluster: TCP bytes go into the endpoint FIFO and the answers come back from FIFO + reply_suffix', async (t) => {
  const dir = tmpPath('x');
  const req = `${dir}.fifo`;
  mkfifo(req);
  mkfifo(`${req}.reply`);
  // The peer reads the request FIFO and answers on the reply FIFO through cat
  // (read-write opens: it outlives each session's writer).
  await peer(t, socat([`OPEN:${req},rdwr!!OPEN:${req}.reply,rdwr`, 'EXEC:cat'], async () => true));
  const port = await freePort();
  await startGw(t, {
    listeners: [{
      name: 't', spec: { protocol: 'TCP', address: '127.0.0.1', port },
      rules: [{ action: { route: { destination: { name: 'pc', spec: { protocol: 'PIPE', reply_suffix: '.reply' }, endpoints: [{ spec: { address: req } }] }, retry: { retry_on: 'connect-failure', num_retries: 5, timeout: 1000 } } } }],
    }],
  });
  // Several sessions one after the other, each through a fresh open of the FIFOs.
  for (const size of [29, 16384, 65535]) {
    const payload = Buffer.alloc(size, size & 0xff);
    const got = await waitFor(() => tcpCollect(port, payload, payload.byteLength).catch(() => undefined), 10_000, `PIPE echo of ${size} B`);
    t.true(got.equals(payload), `${size} B: got ${got.byteLength} B`);
  }
});

test('PIPE cluster: a FIFO nobody reads fails the connect with the reason', async (t) => {
  const lonely = tmpPath('lonely.fifo');
  mkfifo(lonely);
  const port = await freePort();
  const { gw } = await startGw(t, {
    listeners: [{
      name: 't', spec: { protocol: 'TCP', address: '127.0.0.1', port }, options: { track: 30 },
      rules: [{ action: { route: { destination: { name: 'pc', spec: { protocol: 'PIPE' }, endpoints: [{ spec: { address: lonely } }] } } } }],
    }],
  });
  const c = net.connect(port, '127.0.0.1');
  c.on('error', () => undefined);
  t.teardown(() => c.destroy());
  const s = await waitFor(() => [...gw.sessions.values()].find((x) => x.status === 'DESTROYED'), 10_000, 'a failed session');
  t.regex(JSON.stringify(s.events), /nobody reads the FIFO/);
});

test('PIPE listener: an existing file that is not a FIFO is refused', async (t) => {
  const p = tmpPath('regular');
  fs.writeFileSync(p, 'x');
  // REST may name files only under admin.file_root.
  const { base } = await startGw(t, { admin: { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 }, file_root: path.dirname(p) } });
  const r = await fetch(`${base}/api/v1/listeners`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ listener: { name: 'p', spec: { protocol: 'PIPE', filename: p }, rules: [] } }),
  });
  const body = await r.json() as { content: string };
  t.true(r.status >= 400);
  t.regex(body.content, /not a FIFO/);
});
