// HTTP cluster over real sockets: an HTTP listener routed to real node:http
// upstreams on 127.0.0.1 and 127.0.0.2 (same port, so that one cluster can
// hold both), 127.0.0.3/127.0.0.4 on that port as endpoints nobody listens on.

import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { startGateway } from '../../src/app.js';
import { createBalancer } from '../../src/balancer/index.js';
import { silentLogger } from '../../src/observe/log.js';
import { api, controllerConfig, freePort, randomPayload, tcpRoundTrip, waitFor } from './helpers.js';

const MiB = 1024 * 1024;

interface Upstream {
  readonly id: string;
  readonly address: string;
  server: http.Server;
  hits: number;
  /** Requests whose client side went away before the response finished. */
  aborted: number;
  /** Response bytes /big wrote so far; request bytes /stall read so far. */
  written: number;
  read: number;
}

/**
 * An upstream that answers with its id, echoes the method, URL, headers and
 * body (streamed: req.pipe(res)), and has a few special paths:
 * /slow never answers, /reset destroys the connection at once, /big?n=N
 * sends N bytes as fast as the connection takes them, /stall reads 64 KiB of
 * the request body and then stops reading.
 */
function startUpstream(id: string, address: string, port: number): Promise<Upstream> {
  const up: Upstream = { id, address, server: undefined as unknown as http.Server, hits: 0, aborted: 0, written: 0, read: 0 };
  const server = http.createServer((req, res) => {
    up.hits++;
    const path = req.url ?? '';
    if (path.startsWith('/reset')) {
      req.socket.destroy();
      return;
    }
    res.on('close', () => { if (!res.writableFinished) up.aborted++; });
    if (path.startsWith('/big')) {
      const n = Number(new URL(path, 'http://x').searchParams.get('n'));
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      res.writeHead(200, { 'content-length': String(n) });
      const pump = (): void => {
        while (up.written < n) {
          const part = chunk.subarray(0, Math.min(chunk.length, n - up.written));
          up.written += part.length;
          if (!res.write(part)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      req.resume();
      pump();
      return;
    }
    if (path.startsWith('/stall')) {
      req.on('data', (d: Buffer) => {
        up.read += d.length;
        if (up.read >= 64 * 1024) req.pause();
      });
      return;
    }
    if (path.startsWith('/slow')) {
      req.resume();
      return;
    }
    res.setHeader('x-upstream', id);
    res.setHeader('x-echo-method', req.method ?? '');
    res.setHeader('x-echo-url', path);
    res.setHeader('x-echo-headers', Buffer.from(JSON.stringify(req.headers)).toString('base64'));
    res.setHeader('set-cookie', ['a=1', 'b=2']);
    res.statusCode = req.headers['x-want-status'] ? Number(req.headers['x-want-status']) : 201;
    req.pipe(res);
  });
  up.server = server;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port }, () => {
      server.off('error', reject);
      resolve(up);
    });
  });
}

function stopServer(s: http.Server): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}

/** Two upstreams, A on 127.0.0.1 and B on 127.0.0.2, on one port free on both. */
async function upstreams(t: ExecutionContext): Promise<{ port: number; a: Upstream; b: Upstream }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    let a: Upstream | undefined;
    try {
      a = await startUpstream('A', '127.0.0.1', port);
      const b = await startUpstream('B', '127.0.0.2', port);
      t.teardown(() => stopServer(a!.server));
      t.teardown(() => stopServer(b.server));
      return { port, a, b };
    } catch (err) {
      if (a) await stopServer(a.server);
      if (attempt >= 5) throw err;
    }
  }
}

interface Gw {
  /** The controller's base URL (REST API). */
  base: string;
  /** The HTTP listener's base URL. */
  url: string;
}

/**
 * Gateway with the controller listener plus the given listeners; an HTTP
 * listener spec with port 0 gets a free port. (startTestGateway's
 * `extra.listeners` would replace the controller's listener, so the config
 * is built here the same way.)
 */
async function gateway(t: ExecutionContext, listeners: Record<string, unknown>[]): Promise<Gw> {
  const ctlPort = await freePort();
  const port = await freePort();
  const base = controllerConfig(ctlPort);
  const mine = listeners.map((l) => {
    const spec = l.spec as Record<string, unknown>;
    return spec.port === 0 ? { ...l, spec: { ...spec, port } } : l;
  });
  const gw = await startGateway({ config: { ...base, listeners: [...(base.listeners as unknown[]), ...mine] }, logger: silentLogger() });
  t.teardown(() => gw.stop());
  return { base: `http://127.0.0.1:${ctlPort}`, url: `http://127.0.0.1:${port}` };
}

function httpListener(rules: unknown[], name = 'http-in'): Record<string, unknown> {
  return { name, spec: { protocol: 'HTTP', address: '127.0.0.1', port: 0 }, rules };
}

function httpCluster(name: string, port: number, addresses: string[], policy = 'Trivial', specExtra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    spec: { protocol: 'HTTP', port, ...specExtra },
    endpoints: addresses.map((address, i) => ({ name: `${name}-ep${i}`, spec: { address } })),
    loadbalancer: { policy },
  };
}

function routeTo(destination: unknown, route: Record<string, unknown> = {}): Record<string, unknown> {
  return { action: { route: { destination, ...route } } };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with node:http (it lets us send hop-by-hop headers); bounded by timeoutMs. */
function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }); });
      res.on('error', (err) => { clearTimeout(timer); reject(err); });
    });
    const timer = setTimeout(() => { req.destroy(new Error(`no complete reply from ${url} in ${opts.timeoutMs ?? 10_000} ms`)); }, opts.timeoutMs ?? 10_000);
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    req.end(opts.body);
  });
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function echoedHeaders(r: Reply): Record<string, string | undefined> {
  return JSON.parse(Buffer.from(String(r.headers['x-echo-headers']), 'base64').toString('utf8'));
}

test('HTTP cluster: WeightedRandom 1:1 spreads 100 requests over both endpoints', async (t) => {
  const { port, a, b } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.1', '127.0.0.2'], 'WeightedRandom'))])]);
  const seen: Record<string, number> = { A: 0, B: 0 };
  for (let i = 0; i < 100; i++) {
    const r = await request(`${g.url}/spread/${i}`);
    t.is(r.status, 201);
    seen[String(r.headers['x-upstream'])]!++;
  }
  t.is(seen.A! + seen.B!, 100);
  t.true(seen.A! >= 25 && seen.A! <= 75, `A got ${seen.A}, B got ${seen.B}`);
  t.is(a.hits, seen.A);
  t.is(b.hits, seen.B);
});

test('HTTP cluster: Trivial sends every request to the first endpoint', async (t) => {
  const { port, a, b } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.2', '127.0.0.1'], 'Trivial'))])]);
  for (let i = 0; i < 20; i++) {
    const r = await request(`${g.url}/t/${i}`);
    t.is(r.headers['x-upstream'], 'B');
  }
  t.is(b.hits, 20);
  t.is(a.hits, 0);
});

test('HTTP cluster: 0 B, 1 KiB and 10 MiB bodies round-trip intact; method, path, query, status and headers pass', async (t) => {
  const { port } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.1']))])]);
  for (const size of [0, 1024, 10 * MiB]) {
    const body = randomPayload(size);
    const r = await request(`${g.url}/upload/${size}?x=1&y=two`, {
      method: 'PUT',
      headers: {
        'content-length': String(size),
        'x-test': `hello-${size}`,
        'x-forwarded-for': '10.0.0.9',
        connection: 'keep-alive, x-hop',
        'x-hop': 'must not pass',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
      },
      body,
      timeoutMs: 30_000,
    });
    t.is(r.status, 201, `size ${size}`);
    t.is(r.body.length, size);
    t.is(sha256(r.body), sha256(body), `body of ${size} B intact`);
    t.is(r.headers['x-upstream'], 'A');
    t.is(r.headers['x-echo-method'], 'PUT');
    t.is(r.headers['x-echo-url'], `/upload/${size}?x=1&y=two`);
    t.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2'], 'multi-valued response headers pass');
    const h = echoedHeaders(r);
    t.is(h['x-test'], `hello-${size}`);
    t.is(h.host, `127.0.0.1:${port}`, 'host is the upstream');
    t.is(h['x-forwarded-for'], '10.0.0.9, 127.0.0.1');
    t.is(h['content-length'], String(size));
    t.is(h['x-hop'], undefined, 'headers named in Connection are dropped');
    t.is(h['keep-alive'], undefined);
    t.is(h['proxy-authorization'], undefined);
    t.not(h.connection, 'keep-alive, x-hop');
  }
  // A chunked upload of unknown length, and a GET without a body.
  const chunked = randomPayload(300_000);
  const r1 = await request(`${g.url}/chunked`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: chunked });
  t.is(sha256(r1.body), sha256(chunked));
  t.is(echoedHeaders(r1)['transfer-encoding'], 'chunked');
  const r2 = await request(`${g.url}/get`, { headers: { 'x-want-status': '418' } });
  t.is(r2.status, 418, 'the upstream status passes');
  t.is(r2.body.length, 0);
  t.is(r2.headers['x-echo-method'], 'GET');
  const h2 = echoedHeaders(r2);
  t.is(h2['content-length'], undefined, 'a bodiless GET stays bodiless');
  t.is(h2['transfer-encoding'], undefined);
  const r3 = await request(`${g.url}/head`, { method: 'HEAD' });
  t.is(r3.status, 201, 'HEAD completes');
  t.is(r3.headers['x-echo-method'], 'HEAD');
  t.is(r3.body.length, 0);
});

test('HTTP cluster: retry on connect failure skips a dead first endpoint', async (t) => {
  const { port, a } = await upstreams(t);
  const retry = { retry_on: 'connect-failure', num_retries: 2, timeout: 500 };
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.3', '127.0.0.1'], 'Trivial'), { retry })])]);
  const body = randomPayload(1024);
  const started = Date.now();
  const r = await request(`${g.url}/retry`, { method: 'POST', headers: { 'content-length': '1024' }, body });
  t.is(r.status, 201);
  t.is(r.headers['x-upstream'], 'A');
  t.is(sha256(r.body), sha256(body), 'the body survives the retry');
  t.true(Date.now() - started < 5000);
  t.is(a.hits, 1, 'Trivial picks the dead 127.0.0.3 first: an answer from A means the retry worked');
});

test('HTTP cluster: ConsistentHash with the key on the dead endpoint retries on the live one', async (t) => {
  const { port, a } = await upstreams(t);
  const retry = { retry_on: 'connect-failure', num_retries: 2, timeout: 300 };
  const lb = { policy: 'ConsistentHash', key: '/HTTP/headers/x-user' };
  const cluster = { ...httpCluster('hashed', port, ['127.0.0.3', '127.0.0.1']), loadbalancer: lb };
  // Keys that the ring maps to the dead endpoint, found with the gateway's own balancer.
  const ring = createBalancer(lb);
  ring.update([{ name: 'hashed-ep0', address: '127.0.0.3', weight: 1 }, { name: 'hashed-ep1', address: '127.0.0.1', weight: 1 }]);
  const deadKeys: string[] = [];
  for (let i = 0; deadKeys.length < 3; i++) {
    const key = `user-${i}`;
    if (ring.pick({ HTTP: { headers: { 'x-user': key } } })?.name === 'hashed-ep0') deadKeys.push(key);
  }
  const g = await gateway(t, [httpListener([routeTo(cluster, { retry })])]);
  for (const key of deadKeys) {
    const r = await request(`${g.url}/hash`, { headers: { 'x-user': key } });
    t.is(r.status, 201);
    t.is(r.headers['x-upstream'], 'A');
  }
  t.is(a.hits, deadKeys.length);
});

/**
 * A TCP port on `address` that never completes a handshake: a listening
 * socket with a backlog of 0 that nobody accepts on, its queue filled by one
 * connection, so the kernel drops further SYNs. Node always accepts, so the
 * listener is a python3 child. Undefined (with the reason) when python3 is missing.
 */
async function blackhole(t: ExecutionContext, address: string, port: number): Promise<string | undefined> {
  const code = [
    'import socket, sys',
    's = socket.socket()',
    `s.bind(('${address}', ${port}))`,
    's.listen(0)',
    'print("ready", flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const proc = spawn('python3', ['-c', code], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let failed: string | undefined;
  proc.stdout!.on('data', (d) => { out += String(d); });
  proc.stderr!.on('data', (d) => { out += String(d); });
  proc.on('error', (err) => { failed = err.message; });
  proc.on('exit', (c) => { failed ??= `python3 exited with ${c}: ${out}`; });
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); });
  try {
    await waitFor(() => { if (failed !== undefined) throw new Error(failed); return out.includes('ready'); }, 5000, 'the python3 listener');
  } catch (err) {
    return String(err);
  }
  const filler = net.connect(port, address);
  filler.on('error', () => { /* torn down */ });
  t.teardown(() => { filler.destroy(); });
  await new Promise<void>((resolve, reject) => { filler.once('connect', () => resolve()); filler.once('error', reject); });
  return undefined;
}

test.serial('HTTP cluster: an endpoint that never completes the handshake is given up after retry.timeout', async (t) => {
  const { port, a } = await upstreams(t);
  const missing = await blackhole(t, '127.0.0.5', port);
  if (missing !== undefined) {
    if (process.env.CI === 'true') t.fail(`needs python3 for a non-accepting listener: ${missing}`);
    else t.log(`skipped: needs python3 for a non-accepting listener: ${missing}`);
    t.pass();
    return;
  }
  const retry = { retry_on: 'connect-failure', num_retries: 2, timeout: 400 };
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.5', '127.0.0.1']), { retry })])]);
  const started = Date.now();
  const body = randomPayload(4096);
  const r = await request(`${g.url}/blackhole`, { method: 'POST', headers: { 'content-length': '4096' }, body });
  const took = Date.now() - started;
  t.is(r.status, 201);
  t.is(r.headers['x-upstream'], 'A');
  t.is(sha256(r.body), sha256(body));
  // First attempt: 400 ms connect timeout, then the 400 ms retry delay, then A.
  t.true(took >= 750 && took < 4000, `took ${took} ms`);
  t.is(a.hits, 1);
});

test('HTTP cluster: all endpoints dead gives a 502 in l7mp error JSON and the gateway stays up', async (t) => {
  const { port } = await upstreams(t);
  const retry = { retry_on: 'connect-failure', num_retries: 2, timeout: 200 };
  const g = await gateway(t, [httpListener([routeTo(httpCluster('dead', port, ['127.0.0.3', '127.0.0.4']), { retry })])]);
  const r = await request(`${g.url}/nothing`, { method: 'POST', headers: { 'content-length': '5' }, body: Buffer.from('hello') });
  t.is(r.status, 502);
  t.regex(String(r.headers['content-type']), /application\/json/);
  const e = JSON.parse(r.body.toString('utf8'));
  t.is(e.status, 502);
  t.is(e.message, 'Bad Gateway');
  t.regex(e.content, /ECONNREFUSED|connect/i);
  const again = await request(`${g.url}/nothing`);
  t.is(again.status, 502);
  const listeners = await api(g.base, 'GET', '/api/v1/listeners');
  t.is(listeners.status, 200, 'the controller still answers');
});

test('HTTP cluster: a path rule sends /api to one cluster and the rest to another; path_prefix is prepended', async (t) => {
  const { port, a, b } = await upstreams(t);
  const g = await gateway(t, [httpListener([
    { match: { op: 'starts', path: '/HTTP/url/path', value: '/api' }, action: { route: { destination: httpCluster('api', port, ['127.0.0.1'], 'Trivial', { path_prefix: '/v1' }) } } },
    routeTo(httpCluster('web', port, ['127.0.0.2'])),
  ])]);
  const r1 = await request(`${g.url}/api/users?id=7`);
  t.is(r1.headers['x-upstream'], 'A');
  t.is(r1.headers['x-echo-url'], '/v1/api/users?id=7');
  const r2 = await request(`${g.url}/index.html`);
  t.is(r2.headers['x-upstream'], 'B');
  t.is(r2.headers['x-echo-url'], '/index.html');
  const r3 = await request(`${g.url}/apiary`);
  t.is(r3.headers['x-upstream'], 'A', '"starts" is a string prefix match');
  t.is(a.hits, 2);
  t.is(b.hits, 1);
});

test('HTTP cluster: a client that goes away aborts the upstream request', async (t) => {
  const { port, a } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.1']))])]);
  const req = http.request(`${g.url}/slow`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, agent: false });
  req.on('error', () => { /* we destroy it */ });
  req.write('partial');
  await waitFor(() => a.hits === 1, 5000, 'the upstream to see the request');
  req.destroy();
  await waitFor(() => a.aborted === 1, 5000, 'the upstream request to be aborted');
  t.pass();
});

/** Wait until fn() stops changing for quietMs (bounded by timeoutMs); returns the settled value. */
async function settled(fn: () => number, quietMs = 300, timeoutMs = 10_000): Promise<number> {
  let last = fn();
  let since = Date.now();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 20));
    const now = fn();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return now;
    }
    if (Date.now() > deadline) throw new Error(`value still changing after ${timeoutMs} ms (at ${now})`);
  }
}

test.serial('HTTP cluster: a client that stops reading holds the upstream back (response backpressure)', async (t) => {
  const { port, a } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.1']))])]);
  const total = 128 * MiB;
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get(`${g.url}/big?n=${total}`, { agent: false }, resolve);
    req.on('error', reject);
    t.teardown(() => { req.destroy(); });
  });
  res.pause();
  await waitFor(() => a.written > 0, 10_000, 'the upstream to start writing');
  const stalled = await settled(() => a.written);
  t.log(`upstream wrote ${(stalled / MiB).toFixed(1)} MiB while the client read nothing`);
  t.true(stalled < 64 * MiB, `the upstream was held back at ${stalled} bytes`);
  let got = 0;
  res.on('data', (d: Buffer) => { got += d.length; });
  res.resume();
  await waitFor(() => got === total, 30_000, `all ${total} bytes (have ${got})`);
  t.is(a.written, total);
});

test.serial('HTTP cluster: an upstream that stops reading holds the client back (request backpressure)', async (t) => {
  const { port, a } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.1']))])]);
  const total = 128 * MiB;
  let sent = 0;
  const req = http.request(`${g.url}/stall`, { method: 'POST', headers: { 'content-length': String(total) }, agent: false });
  req.on('error', () => { /* destroyed at the end */ });
  t.teardown(() => { req.destroy(); });
  const chunk = Buffer.alloc(64 * 1024, 0x33);
  const pump = (): void => {
    while (sent < total) {
      sent += chunk.length;
      if (!req.write(chunk)) {
        req.once('drain', pump);
        return;
      }
    }
  };
  pump();
  await waitFor(() => a.read >= 64 * 1024, 10_000, 'the upstream to read the first 64 KiB');
  const stalled = await settled(() => sent);
  t.log(`client got ${(stalled / MiB).toFixed(1)} MiB out while the upstream read ${(a.read / 1024).toFixed(0)} KiB`);
  t.true(stalled < 64 * MiB, `the client was held back at ${stalled} bytes`);
  t.true(a.read < 1 * MiB);
});

test('HTTP cluster: an upstream that resets the connection gives the client a 502', async (t) => {
  const { port } = await upstreams(t);
  const g = await gateway(t, [httpListener([routeTo(httpCluster('web', port, ['127.0.0.1']))])]);
  const r = await request(`${g.url}/reset`);
  t.is(r.status, 502);
  const e = JSON.parse(r.body.toString('utf8'));
  t.is(e.status, 502);
  t.is(typeof e.content, 'string');
  const ok = await request(`${g.url}/fine`);
  t.is(ok.status, 201, 'the next request works');
});

test('HTTP cluster behind a TCP listener: the byte stream is the body, the response body comes back', async (t) => {
  const { port } = await upstreams(t);
  const tcpPort = await freePort();
  await gateway(t, [{
    name: 'tcp-in',
    spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpPort },
    rules: [routeTo(httpCluster('web', port, ['127.0.0.1']))],
  }]);
  const payload = randomPayload(200_000);
  const back = await tcpRoundTrip(tcpPort, payload);
  t.is(sha256(back), sha256(payload));
});

test('HTTP cluster spec validation: port required, tls: true not supported, bad path_prefix rejected', async (t) => {
  const g = await gateway(t, []);
  const post = (spec: Record<string, unknown>) => api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'c', spec: { protocol: 'HTTP', ...spec }, endpoints: [{ spec: { address: '127.0.0.1' } }] } });
  let r = await post({});
  t.is(r.status, 400);
  t.regex(r.text, /port/);
  r = await post({ port: 80, tls: true });
  t.is(r.status, 400);
  t.regex(r.text, /tls/);
  r = await post({ port: 80, path_prefix: 'no-slash' });
  t.is(r.status, 400);
  t.regex(r.text, /path_prefix/);
  r = await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'c', spec: { protocol: 'HTTP', port: 80 }, endpoints: [{ spec: {} }] } });
  t.is(r.status, 400);
  t.regex(r.text, /address/);
  r = await post({ port: 80, path_prefix: '/v1' });
  t.is(r.status, 200);
});
