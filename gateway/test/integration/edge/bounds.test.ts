// Bounded inputs at the edge, over real sockets: a JSONSocket header too deep
// or too large, unfinished WebSocket messages across connections, and YAML
// REST bodies. Each test reproduces a fault of the unbounded gateway.

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import net from 'node:net';
import { pino } from 'pino';
import type { Gateway } from '../../../src/core/gateway.js';
import { LEVELS, type Logger } from '../../../src/observe/log.js';
import { api, freePort, nextMessage, startGw, udpClient, waitFor } from '../helpers.js';

const ADMIN = { log_level: 'silent', metrics: { enabled: false } };

/** Log lines at info and above, parsed. */
function captureLogger(): { logger: Logger; lines: () => any[] } {
  const out: string[] = [];
  const logger = pino({ customLevels: LEVELS, useOnlyCustomLevels: true, level: 'info' }, { write: (x: string) => { out.push(x); } }) as Logger;
  return { logger, lines: () => out.map((l) => JSON.parse(l)) };
}

test('admin.limits: the edge limits are parsed once with defaults; a bad value refuses the config', async (t) => {
  const { gw } = await startGw(t, { admin: adminWith({ yaml_body_bytes: 4096 }) });
  t.is(gw.limits.settings.yaml_body_bytes, 4096);
  t.is(gw.limits.settings.jsonsocket_header_depth, 16);
  for (const bad of [{ jsonsocket_header_depth: 0 }, { message_buffer_bytes: 'lots' }, { yaml_aliases: 1.5 }]) {
    await t.throwsAsync(startGw(t, { admin: adminWith(bad) }), { message: /admin\.limits\./ }, JSON.stringify(bad));
  }
});

function adminWith(limits: Record<string, unknown>): Record<string, unknown> {
  return { ...ADMIN, limits: { api_rate: 0, ...limits } };
}

/** A JSONSocket request header nested `depth` levels deep, built as text (JSON.stringify would overflow first). */
function deepHeader(depth: number): Buffer {
  return Buffer.from(`{"JSONSocketVersion":1,"deep":${'['.repeat(depth)}${']'.repeat(depth)}}`);
}

/** Send one raw datagram and wait for the answer. */
async function udpExchange(t: ExecutionContext, port: number, payload: Buffer): Promise<Buffer> {
  const s = await udpClient();
  t.teardown(() => s.close());
  s.send(payload, port, '127.0.0.1');
  return nextMessage(s, 3000);
}

function jsonSocketListener(port: number, destination: unknown, ingress: unknown[] = []): Record<string, unknown> {
  return {
    name: 'js-in',
    spec: { protocol: 'JSONSocket', transport: { protocol: 'UDP', port, address: '127.0.0.1' } },
    rules: [{ action: { route: { destination, ingress } } }],
  };
}

test('fault 4: a JSONSocket header nested 20k deep is refused at the handshake and GET /config, /sessions keep answering 200', async (t) => {
  const port = await freePort();
  const { base, gw } = await startGw(t, { admin: adminWith({}), listeners: [jsonSocketListener(port, { name: 'echo', spec: { protocol: 'Echo' } })] });
  // 40 kB: over the default size limit as well as the depth limit.
  const answer = JSON.parse((await udpExchange(t, port, deepHeader(20_000))).toString('utf8'));
  t.true(answer.JSONSocketStatus === 413 || answer.JSONSocketStatus === 400, JSON.stringify(answer));
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  t.is((await api(base, 'GET', '/api/v1/sessions')).status, 200);
  // Within the size limit, the depth limit answers.
  const deep = JSON.parse((await udpExchange(t, port, deepHeader(5_000))).toString('utf8'));
  t.is(deep.JSONSocketStatus, 400, JSON.stringify(deep));
  t.regex(deep.JSONSocketMessage, /nested deeper than 16/);
  t.is(gw.refusals.total('header_depth'), 1);
  t.is((await api(base, 'GET', '/api/v1/sessions')).status, 200);
});

test('fault 4: a JSONSocket header over jsonsocket_header_bytes is refused with 413', async (t) => {
  const port = await freePort();
  const { gw } = await startGw(t, { admin: adminWith({ jsonsocket_header_bytes: 1024 }), listeners: [jsonSocketListener(port, { name: 'echo', spec: { protocol: 'Echo' } })] });
  const big = Buffer.from(JSON.stringify({ JSONSocketVersion: 1, pad: 'x'.repeat(2000) }));
  const answer = JSON.parse((await udpExchange(t, port, big)).toString('utf8'));
  t.is(answer.JSONSocketStatus, 413);
  t.is(gw.refusals.total('header_size'), 1);
});

test('fault 4: deep metadata that does get in (limit raised) neither breaks the dumps nor escapes JSONEncap: one session ends', async (t) => {
  const port = await freePort();
  const log = captureLogger();
  const { base, gw } = await startGw(t, {
    admin: adminWith({ jsonsocket_header_depth: 1_000_000, jsonsocket_header_bytes: 65_000 }),
    listeners: [jsonSocketListener(port, { name: 'echo', spec: { protocol: 'Echo' } }, [{ name: 'encap', spec: { protocol: 'JSONEncap' } }])],
  }, log.logger);
  const s = await udpClient();
  t.teardown(() => s.close());
  s.send(deepHeader(20_000), port, '127.0.0.1');
  const answer = JSON.parse((await nextMessage(s, 3000)).toString('utf8'));
  t.is(answer.JSONSocketStatus, 200, 'admitted: the limit was raised on purpose');
  const sessions = await api(base, 'GET', '/api/v1/sessions');
  t.is(sessions.status, 200, sessions.text.slice(0, 300));
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  // JSONEncap cannot write this metadata: the session ends, the gateway does not throw.
  s.send(Buffer.from('payload'), port, '127.0.0.1');
  await waitFor(() => [...gw.sessions.values()].every((x) => x.status === 'DESTROYED'), 3000, 'the session to end');
  s.send(Buffer.from('more'), port, '127.0.0.1'); // a late datagram of the same flow must not log again
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  const ended = log.lines().filter((l) => /Encap transform failed/.test(String(l.reason ?? l.err ?? l.msg)));
  t.is(ended.length, 1, JSON.stringify(log.lines().map((l) => l.msg)));
});

/** A raw WebSocket client: handshake, then one binary frame announcing `announced` bytes of which `sent` are sent. */
async function unfinishedMessage(port: number, announced: number, sent: number): Promise<{ closeCode: Promise<number | undefined>; socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('error', reject); });
  const key = crypto.randomBytes(16).toString('base64');
  socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no 101')), 3000);
    const on = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.off('data', on);
      if (!buf.subarray(0, 12).toString().includes('101')) reject(new Error(buf.toString()));
      buf = buf.subarray(end + 4);
      resolve();
    };
    socket.on('data', on);
  });
  const closeCode = new Promise<number | undefined>((resolve) => {
    const check = (): boolean => {
      // A server close frame: 0x88, 7-bit length, 2-byte code.
      const i = buf.indexOf(0x88);
      if (i >= 0 && buf.length >= i + 4) { resolve(buf.readUInt16BE(i + 2)); return true; }
      return false;
    };
    if (check()) return;
    socket.on('data', (d: Buffer) => { buf = Buffer.concat([buf, d]); check(); });
    socket.on('close', () => resolve(undefined));
    socket.on('error', () => {});
  });
  const head = Buffer.alloc(14);
  head[0] = 0x82; // FIN, binary
  head[1] = 0x80 | 127; // masked, 64-bit length
  head.writeBigUInt64BE(BigInt(announced), 2);
  crypto.randomBytes(4).copy(head, 10);
  socket.write(head);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  for (let left = sent; left > 0; left -= chunk.length) socket.write(left >= chunk.length ? chunk : chunk.subarray(0, left));
  return { closeCode, socket };
}

async function wsGateway(t: ExecutionContext, engine: 'uws' | 'ws', budget: number, maxMessage: number): Promise<{ port: number; gw: Gateway }> {
  const port = await freePort();
  const { gw } = await startGw(t, {
    admin: adminWith({ message_buffer_bytes: budget }),
    listeners: [{
      name: 'ws-in',
      spec: { protocol: 'WebSocket', address: '127.0.0.1', port, engine, max_message_size: maxMessage },
      rules: [{ action: { route: { destination: { name: 'discard', spec: { protocol: 'Discard' } } } } }],
    }],
  });
  return { port, gw };
}

for (const engine of ['uws', 'ws'] as const) {
  test(`fault 5 (${engine}): unfinished WebSocket messages across connections stay within message_buffer_bytes; the one beyond gets close 1013`, async (t) => {
    const MiB = 1024 * 1024;
    const { port, gw } = await wsGateway(t, engine, 5 * MiB, 2 * MiB);
    const conns: Array<Awaited<ReturnType<typeof unfinishedMessage>>> = [];
    t.teardown(() => { for (const c of conns) c.socket.destroy(); });
    // Each connection sends 1.5 MiB of a 2 MiB message and stops: four of them would hold 6 MiB.
    for (let i = 0; i < 4; i++) conns.push(await unfinishedMessage(port, 2 * MiB, 1.5 * MiB));
    const settled: Array<number | undefined | 'open'> = conns.map(() => 'open');
    conns.forEach((c, i) => { void c.closeCode.then((code) => { settled[i] = code; }); });
    await waitFor(() => settled.some((x) => x !== 'open'), 5000, 'a connection beyond the budget to be closed');
    const closed = [...settled];
    t.true(closed.includes(1013), `some connection beyond the budget is closed with 1013: ${JSON.stringify(closed)}`);
    t.true(closed.includes('open'), `the connections within the budget stay open: ${JSON.stringify(closed)}`);
    t.true(gw.limits.messages.used <= 5 * MiB, `held ${gw.limits.messages.used}`);
    t.true(gw.refusals.total('message_buffer') >= 1);
    for (const c of conns) c.socket.destroy();
    await waitFor(() => gw.limits.messages.used === 0, 3000, 'the budget to be released when the connections go');
  });
}

/** One complete masked WebSocket frame at the start of `b` (unmasked payload and its size on the wire), or undefined. */
function clientFrame(b: Buffer): { opcode: number; payload: Buffer; size: number } | undefined {
  if (b.length < 2) return undefined;
  let len = b[1]! & 0x7f;
  let off = 2;
  if (len === 126) { if (b.length < 4) return undefined; len = b.readUInt16BE(2); off = 4; }
  else if (len === 127) { if (b.length < 10) return undefined; len = Number(b.readBigUInt64BE(2)); off = 10; }
  const masked = (b[1]! & 0x80) !== 0;
  const start = off + (masked ? 4 : 0);
  if (b.length < start + len) return undefined;
  const payload = Buffer.from(b.subarray(start, start + len));
  if (masked) for (let i = 0; i < len; i++) payload[i]! ^= b[off + (i % 4)]!;
  return { opcode: b[0]! & 0x0f, payload, size: start + len };
}

test('fault 5 (WebSocket cluster): an upstream that sends an unfinished message beyond the budget is closed with 1013', async (t) => {
  const MiB = 1024 * 1024;
  // A raw WebSocket upstream: accepts the upgrade, then sends 1.5 MiB of a 2 MiB message and stops.
  const closeCodes: number[] = [];
  const sockets = new Set<net.Socket>();
  const upstream = net.createServer((sock) => {
    sockets.add(sock);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const key = /sec-websocket-key:\s*(\S+)/i.exec(buf.subarray(0, end).toString())![1]!;
        const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        upgraded = true;
        buf = buf.subarray(end + 4);
        const head = Buffer.alloc(10);
        head[0] = 0x82;
        head[1] = 127;
        head.writeBigUInt64BE(BigInt(2 * MiB), 2);
        sock.write(head);
        sock.write(Buffer.alloc(1.5 * MiB, 0x61));
      }
      // The gateway's frames, one by one (masked, as a client's): a byte
      // search for 0x88 also hit the masked bytes of its data frame.
      for (;;) {
        const f = clientFrame(buf);
        if (f === undefined) break;
        buf = buf.subarray(f.size);
        if (f.opcode === 8 && f.payload.length >= 2) closeCodes.push(f.payload.readUInt16BE(0));
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { for (const x of sockets) x.destroy(); upstream.close(); });
  const wsPort = (upstream.address() as net.AddressInfo).port;
  const udpPort = await freePort();
  const { gw } = await startGw(t, {
    admin: adminWith({ message_buffer_bytes: MiB }),
    listeners: [{
      name: 'udp-in',
      spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort },
      rules: [{ action: { route: { destination: { name: 'ws-up', spec: { protocol: 'WebSocket', port: wsPort, max_message_size: 4 * MiB }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
    }],
  });
  const s = await udpClient();
  t.teardown(() => s.close());
  s.send('hello', udpPort, '127.0.0.1');
  await waitFor(() => closeCodes.length > 0, 5000, 'the gateway to close the upstream');
  t.is(closeCodes[0], 1013);
  t.is(gw.refusals.total('message_buffer'), 1);
  t.true(gw.limits.messages.used <= MiB);
  for (const x of sockets) x.destroy();
  await waitFor(() => gw.limits.messages.used === 0, 3000, 'the budget to be released');
});

test('message budget: REST bodies held at once count against message_buffer_bytes (503)', async (t) => {
  const { base, gw } = await startGw(t, { admin: adminWith({ message_buffer_bytes: 1000 }) });
  const r = await api(base, 'POST', '/api/v1/clusters', JSON.stringify({ cluster: { name: 'c', spec: { protocol: 'UDP', port: 9 }, pad: 'x'.repeat(2000) } }));
  t.is(r.status, 503, r.text);
  t.is(gw.refusals.total('message_buffer'), 1);
  t.is(gw.limits.messages.used, 0);
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
});

/** A YAML body of `bytes` that is slow to parse: one flat mapping (the duplicate-key check is quadratic in its keys). */
function slowYaml(bytes: number): string {
  let s = 'cluster:\n  name: y\n  spec: {protocol: UDP, port: 9}\n  endpoints: []\n  extra:\n';
  for (let i = 0; s.length < bytes - 16; i++) s += `    k${i}: v\n`;
  return s.slice(0, bytes);
}

test('fault 6: YAML bodies cannot stall the data plane: a UDP echo keeps answering while max-size and oversized YAML bodies are posted; oversized is 413 at once', async (t) => {
  const udpPort = await freePort();
  const { base, gw } = await startGw(t, {
    admin: adminWith({}),
    listeners: [{ name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort }, rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }],
  });
  const s = await udpClient();
  t.teardown(() => s.close());
  s.send('warm', udpPort, '127.0.0.1');
  await nextMessage(s, 3000);
  let worst = 0;
  let probing = true;
  const probes = (async () => {
    while (probing) {
      const sent = Date.now();
      s.send('ping', udpPort, '127.0.0.1');
      await nextMessage(s, 5000);
      worst = Math.max(worst, Date.now() - sent);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const maxSize = 16 * 1024; // the default admin.limits.yaml_body_bytes
  const started = Date.now();
  const over = await api(base, 'POST', '/api/v1/clusters', slowYaml(128 * 1024), 'text/x-yaml'); // seconds of parsing without the limit
  const overMs = Date.now() - started;
  const atMax = await api(base, 'POST', '/api/v1/clusters', slowYaml(maxSize), 'text/x-yaml');
  probing = false;
  await probes;
  t.is(over.status, 413, over.text.slice(0, 200));
  t.true(overMs < 1000, `the oversized YAML body was refused in ${overMs} ms`);
  t.not(atMax.status, 413, 'a max-size YAML body is parsed');
  t.true(worst < 1000, `a UDP echo took ${worst} ms while YAML was parsed`);
  t.true(gw.refusals.total('body_size') >= 1);
});

test('YAML aliases beyond yaml_aliases are refused (400) and counted', async (t) => {
  const { base, gw } = await startGw(t, { admin: adminWith({ yaml_aliases: 5 }) });
  const body = `x: &a [1]\nlist: [${Array(10).fill('*a').join(', ')}]\ncluster: {name: c, spec: {protocol: UDP, port: 9}}\n`;
  const r = await api(base, 'POST', '/api/v1/clusters', body, 'text/x-yaml');
  t.is(r.status, 400, r.text);
  t.regex(r.body.content, /aliases/);
  t.is(gw.refusals.total('yaml_aliases'), 1);
});

