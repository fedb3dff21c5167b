// HTTP semantics at the edge, over real sockets: request paths are
// normalised before any rule sees them and the upstream gets the normalised
// path; a 502 tells the client nothing about the upstream's address; the
// REST status line carries the right reason phrase.

import test, { type ExecutionContext } from 'ava';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { normalizePath } from '../../../src/routing/httppath.js';
import { freePort, startGw } from '../helpers.js';

/** An upstream that records the request target it received and answers 200 with it. */
async function recordingUpstream(t: ExecutionContext): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`upstream saw ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { port: (server.address() as AddressInfo).port, seen };
}

/** Send one raw HTTP/1.1 request (no client-side path cleanup, as fetch would do) and return the raw response head and body. */
function rawRequest(port: number, requestTarget: string, method = 'GET'): Promise<{ statusLine: string; status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`no answer for ${requestTarget}`)); }, 5000);
    c.on('data', (d) => {
      buf += d.toString('latin1');
      const headEnd = buf.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const m = /content-length:\s*(\d+)/i.exec(buf.slice(0, headEnd));
      if (m && buf.length < headEnd + 4 + Number(m[1])) return;
      clearTimeout(timer);
      c.destroy();
      const statusLine = buf.slice(0, buf.indexOf('\r\n'));
      resolve({ statusLine, status: Number(statusLine.split(' ')[1]), text: buf.slice(headEnd + 4) });
    });
    c.on('error', (err) => { clearTimeout(timer); reject(err); });
    c.write(`${method} ${requestTarget} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
  });
}

/** A gateway whose HTTP listener routes `starts /public` to the upstream and nothing else. */
async function publicOnlyGateway(t: ExecutionContext, upstreamPort: number): Promise<number> {
  const port = await freePort();
  await startGw(t, {
    listeners: [{
      name: 'web',
      spec: { protocol: 'HTTP', address: '127.0.0.1', port },
      rules: [{
        match: { op: 'starts', path: '/HTTP/url/path', value: '/public' },
        action: { route: { destination: { name: 'up', spec: { protocol: 'HTTP', port: upstreamPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } },
      }],
    }],
  });
  return port;
}

test('fault 19: /public/../admin and its %2e%2e forms never reach the upstream through a "starts /public" rule', async (t) => {
  const up = await recordingUpstream(t);
  const port = await publicOnlyGateway(t, up.port);
  for (const target of ['/public/../admin', '/public/%2e%2e/admin', '/public/%2E%2e/admin', '/public/.%2e/admin', '/public//..//admin']) {
    const r = await rawRequest(port, target);
    t.not(r.status, 200, `${target} must not be routed by the /public rule: ${r.statusLine} ${r.text}`);
  }
  t.deepEqual(up.seen, [], 'the upstream saw none of them');
});

test('fault 19: the upstream receives the normalised path (dot segments removed, slashes merged, unreserved escapes decoded)', async (t) => {
  const up = await recordingUpstream(t);
  const port = await publicOnlyGateway(t, up.port);
  const r = await rawRequest(port, '/public/./a//b/../%63ss/x%2Fy?q=/../1');
  t.is(r.status, 200, r.text);
  t.deepEqual(up.seen, ['/public/a/css/x%2Fy?q=/../1'], 'query untouched, %2F kept encoded');
});

test('fault 19: a path that climbs above the root, or hides a dot segment behind %2F, is 400', async (t) => {
  const up = await recordingUpstream(t);
  const port = await publicOnlyGateway(t, up.port);
  for (const target of ['/public/../../etc/passwd', '/..', '/public%2F..%2Fadmin', '/public\\..\\admin', '/public/%zz/%2e%2e']) {
    const r = await rawRequest(port, target);
    t.is(r.status, 400, `${target}: ${r.statusLine}`);
    t.is(JSON.parse(r.text).code, 'INVALID_INPUT', r.text);
  }
  t.deepEqual(up.seen, []);
});

for (const engine of ['uws', 'ws'] as const) {
  test(`fault 19 (WebSocket, ${engine}): the upgrade path is normalised before the listener's path check; climbing above root is 400`, async (t) => {
    const port = await freePort();
    const { gw } = await startGw(t, {
      listeners: [{
        name: 'ws-in',
        spec: { protocol: 'WebSocket', address: '127.0.0.1', port, engine, path: '/ws' },
        rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }],
      }],
    });
    const upgrade = (target: string) => new Promise<string>((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1');
      let buf = '';
      const timer = setTimeout(() => { c.destroy(); reject(new Error(`no answer for ${target}`)); }, 5000);
      c.on('data', (d) => {
        buf += d.toString('latin1');
        if (!buf.includes('\r\n')) return;
        clearTimeout(timer);
        c.destroy();
        resolve(buf.slice(0, buf.indexOf('\r\n')));
      });
      c.on('error', reject);
      c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    t.regex(await upgrade('/x/../ws'), / 101 /, 'normalised to /ws');
    t.regex(await upgrade('/ws/../../ws'), / 400 /);
    t.is(gw.refusals.total('http_path'), 1);
  });
}

test('normalizePath: RFC 3986 remove_dot_segments cases and the documented choices', (t) => {
  const ok = (raw: string, want: string) => t.deepEqual(normalizePath(raw), { ok: true, path: want }, raw);
  ok('/a/b/c/./../../g', '/a/g'); // RFC 3986 5.4.2
  ok('/mid/content=5/../6', '/mid/6');
  ok('/a/b/..', '/a/');
  ok('/a/./', '/a/');
  ok('//a///b', '/a/b');
  ok('/%7euser/%41', '/~user/A');
  ok('/p%c3%a9', '/p%C3%A9');
  ok('/x%2fy', '/x%2Fy');
  t.false(normalizePath('/a/../..').ok);
  t.false(normalizePath('/x%2F..').ok);
  t.false(normalizePath('relative').ok);
  t.false(normalizePath('/a/%zz').ok);
});

test('fault 20: a 502 tells the data-plane client nothing about the upstream address, port or errno', async (t) => {
  const dead = await freePort();
  const port = await freePort();
  await startGw(t, {
    listeners: [{
      name: 'web',
      spec: { protocol: 'HTTP', address: '127.0.0.1', port },
      rules: [{ action: { route: { destination: { name: 'dead', spec: { protocol: 'HTTP', port: dead }, endpoints: [{ spec: { address: '127.0.0.1' } }] }, retry: { retry_on: 'never', timeout: 500 } } } }],
    }],
  });
  const r = await rawRequest(port, '/x');
  t.is(r.status, 502);
  t.is(r.statusLine, 'HTTP/1.1 502 Bad Gateway');
  t.false(r.text.includes(`:${dead}`), `the body names the upstream port: ${r.text}`);
  t.false(/ECONNREFUSED|errno|connect ECONN/i.test(r.text), `the body names the errno: ${r.text}`);
  t.is(JSON.parse(r.text).message, 'Bad Gateway');
});

test('fault 21: the REST status line for 200 reads "200 OK", errors carry their own phrase', async (t) => {
  const { base } = await startGw(t, {});
  const port = Number(new URL(base).port);
  t.is((await rawRequest(port, '/api/v1/config')).statusLine, 'HTTP/1.1 200 OK');
  t.is((await rawRequest(port, '/api/v1/listeners/nope')).statusLine, 'HTTP/1.1 404 Not Found');
});
