// The secured control plane: bearer token on every operation (constant-time
// compare), TLS for the controller, per-client rate limit, body limit,
// static-only protocols, loopback defaults and the startup warnings.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { DEFAULT_CONFIG, startGateway } from '../../src/app.js';
import { checkSchema } from '../../src/api/dispatch.js';
import { L7mpClient, L7mpClientError } from '../../src/api/generated/client.js';
import { routes } from '../../src/api/generated/routes.js';
import {
  ApiGuard, RateLimiter, TOKEN_ENV, bearerToken, exposureWarnings, isLoopback, tokenMatches,
} from '../../src/api/security.js';
import type { GatewayError } from '../../src/core/errors.js';
import type { Gateway } from '../../src/core/gateway.js';
import { LEVELS, silentLogger, type Logger } from '../../src/observe/log.js';
import { controllerConfig, freePort, tcpListening } from './helpers.js';

const TOKEN = 'k7-Secret.token_0123456789abcdef';
const NO_ENV: NodeJS.ProcessEnv = {};

type T = { teardown(fn: () => unknown): void };

/** Inline rules to the REST controller; its cluster is named implicitly, so several may coexist. */
const CONTROLLER_RULES = [{ action: { route: { destination: { spec: { protocol: 'L7mpController' } } } } }];

async function start(t: T, extra: Record<string, unknown> = {}, opts: { env?: NodeJS.ProcessEnv; logger?: Logger } = {}): Promise<{ gw: Gateway; base: string; port: number }> {
  const port = await freePort();
  const gw = await startGateway({ config: controllerConfig(port, extra), logger: opts.logger ?? silentLogger(), env: opts.env ?? NO_ENV });
  t.teardown(() => gw.stop());
  return { gw, base: `http://127.0.0.1:${port}`, port };
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

async function call(base: string, method: string, urlPath: string, opts: { token?: string; auth?: string; body?: unknown; dispatcher?: Agent } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  }
  const res = await undiciFetch(base + urlPath, { method, headers, ...(body !== undefined ? { body } : {}), ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) });
  const text = await res.text();
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  return { status: res.status, headers: res.headers as unknown as Headers, text, body: parsed };
}

/** The configuration without the live sessions (the probing requests are sessions themselves). */
async function configOf(base: string, token?: string): Promise<unknown> {
  const r = await call(base, 'GET', '/api/v1/config', token !== undefined ? { token } : {});
  const { sessions: _s, ...rest } = r.body as Record<string, unknown>;
  return rest;
}

/** Send raw bytes and collect what comes back until the peer closes or `until` holds. */
function rawExchange(port: number, data: string, until: (s: string) => boolean, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => { c.destroy(); reject(new Error(`no answer in ${timeoutMs} ms; got ${JSON.stringify(got)}`)); }, timeoutMs);
    const done = () => { clearTimeout(t); c.destroy(); resolve(got); };
    c.on('data', (d) => { got += d.toString('latin1'); if (until(got)) done(); });
    c.on('end', done);
    c.on('close', done);
    c.on('error', (e) => { clearTimeout(t); reject(e); });
    c.on('connect', () => c.write(data));
  });
}

function captureLogger(): { logger: Logger; lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  const logger = pino({ customLevels: LEVELS, useOnlyCustomLevels: true, level: 'info' }, stream) as Logger;
  return { logger, lines };
}

// --------------------------------------------------------------- the compare

test('tokenMatches: equal, unequal, different lengths, missing', (t) => {
  t.true(tokenMatches(TOKEN, TOKEN));
  t.false(tokenMatches(TOKEN.slice(0, -1) + 'X', TOKEN));
  t.false(tokenMatches(TOKEN + 'x', TOKEN));
  t.false(tokenMatches(TOKEN.slice(0, 3), TOKEN));
  t.false(tokenMatches('', TOKEN));
  t.false(tokenMatches(undefined, TOKEN));
  t.false(tokenMatches(TOKEN.toUpperCase(), TOKEN));
});

test('tokenMatches compares equal-length SHA-256 digests with crypto.timingSafeEqual, whatever the lengths', (t) => {
  const original = crypto.timingSafeEqual;
  const seen: Array<[number, number]> = [];
  crypto.timingSafeEqual = ((a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    seen.push([a.byteLength, b.byteLength]);
    return original(a, b);
  }) as typeof crypto.timingSafeEqual;
  syncBuiltinESMExports(); // the module's named import sees the spy
  try {
    tokenMatches(TOKEN, TOKEN);
    tokenMatches('short', TOKEN);
    tokenMatches(TOKEN.repeat(10), TOKEN);
    tokenMatches(undefined, TOKEN);
  } finally {
    crypto.timingSafeEqual = original;
    syncBuiltinESMExports();
  }
  t.deepEqual(seen, [[32, 32], [32, 32], [32, 32], [32, 32]]);
});

test('bearerToken reads "Authorization: Bearer <token>" only', (t) => {
  t.is(bearerToken(`Bearer ${TOKEN}`), TOKEN);
  t.is(bearerToken(`bearer ${TOKEN}`), TOKEN);
  t.is(bearerToken(`  BEARER   ${TOKEN}  `), TOKEN);
  t.is(bearerToken(undefined), undefined);
  t.is(bearerToken(`Basic ${TOKEN}`), undefined);
  t.is(bearerToken('Bearer'), undefined);
  t.is(bearerToken('Bearer a b'), undefined);
  t.is(bearerToken([`Bearer ${TOKEN}`]), TOKEN);
});

// -------------------------------------------------------- every operation

/** Minimal bodies that pass the spec's schema (checked below), so a 401 is never a 400 in disguise. */
const BODIES: Record<string, unknown> = {
  setConf: {},
  applyAdmin: { admin: {} },
  addListener: { listener: { name: 'dummy-listener', spec: { protocol: 'Echo' }, rules: 'dummy-rulelist' } },
  addCluster: { cluster: { name: 'dummy-cluster', spec: { protocol: 'Echo' } } },
  addEndPoint: { endpoint: { name: 'dummy-endpoint', spec: { address: '127.0.0.1' } } },
  addRuleList: { rulelist: { name: 'dummy-rulelist', rules: [] } },
  addRuleToRuleList: { rule: 'dummy-rule' },
  addRule: { rule: { name: 'dummy-rule', action: { route: 'dummy-route' } } },
  addRoute: { route: { name: 'dummy-route', destination: 'dummy-cluster' } },
};

function concretePath(template: string): string {
  return template.replace(/\{(\w+)\}/g, (_m, p: string) => (p === 'position' ? '0' : `dummy-${p}`));
}

test('with a token, every REST operation answers 401 without it or with a wrong one, and not 401 with it', async (t) => {
  const g = await start(t, { admin: { log_level: 'silent', api_token: TOKEN, limits: { api_rate: 0 } } });
  const before = await configOf(g.base, TOKEN);
  t.true(routes.length >= 30, `only ${routes.length} routes`);
  const wrongTokens = [`${TOKEN}x`, TOKEN.slice(1), 'nope'];
  for (const r of routes) {
    const body = r.hasBody ? BODIES[r.operationId] : undefined;
    if (r.hasBody) {
      t.not(body, undefined, `no dummy body for ${r.operationId}`);
      t.notThrows(() => checkSchema(r.operationId, body), `dummy body of ${r.operationId} must be valid`);
    }
    const p = concretePath(r.path);
    const what = `${r.method} ${p} (${r.operationId})`;
    const cases: Array<[string, { token?: string; auth?: string }, RegExp]> = [
      ['no token', {}, /^Bearer realm="l7mp"$/],
      ['wrong token', { token: wrongTokens[r.operationId.length % wrongTokens.length]! }, /^Bearer realm="l7mp", error="invalid_token"$/],
      ['another scheme', { auth: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, /^Bearer realm="l7mp"$/],
    ];
    for (const [label, auth, challenge] of cases) {
      const res = await call(g.base, r.method, p, { ...auth, ...(body !== undefined ? { body } : {}) });
      t.is(res.status, 401, `${what} with ${label}: ${res.text}`);
      t.like(res.body, { status: 401, message: 'Unauthorized', code: 'UNAUTHORIZED' }, `${what} with ${label}`);
      t.is(typeof res.body?.content, 'string');
      t.regex(res.headers.get('www-authenticate') ?? '', challenge, `${what} with ${label}`);
    }
  }
  t.deepEqual(await configOf(g.base, TOKEN), before, 'the refused calls changed nothing');
  for (const r of routes) {
    const body = r.hasBody ? BODIES[r.operationId] : undefined;
    const p = concretePath(r.path);
    const res = await call(g.base, r.method, p, { token: TOKEN, ...(body !== undefined ? { body } : {}) });
    t.not(res.status, 401, `${r.method} ${p} (${r.operationId}) with the token: ${res.text}`);
    t.true([200, 400, 404, 409].includes(res.status), `${r.method} ${p} (${r.operationId}) with the token: ${res.status} ${res.text}`);
  }
});

test('without a configured token the API is open (the default)', async (t) => {
  const g = await start(t);
  t.is((await call(g.base, 'GET', '/api/v1/config')).status, 200);
  t.is((await call(g.base, 'GET', '/api/v1/config', { token: 'anything' })).status, 200);
});

test('the generated client sends the token; without it the client sees 401 UNAUTHORIZED', async (t) => {
  const g = await start(t, { admin: { log_level: 'silent', api_token: TOKEN } });
  const ok = new L7mpClient(g.base, { token: TOKEN, fetch: undiciFetch as unknown as typeof fetch });
  t.is((await ok.getConf()).listeners?.[0]?.name, 'controller-listener');
  t.deepEqual(await ok.addCluster({ cluster: { name: 'c1', spec: { protocol: 'Echo' } } }), { status: 200, message: 'OK' });
  const anon = new L7mpClient(g.base, { fetch: undiciFetch as unknown as typeof fetch });
  const err = await t.throwsAsync(anon.deleteCluster('c1'), { instanceOf: L7mpClientError });
  t.is(err?.status, 401);
  t.is(err?.code, 'UNAUTHORIZED');
  t.truthy(await ok.getCluster('c1'));
});

test('a refused call is answered from its head, before the body is read', async (t) => {
  const g = await start(t, { admin: { log_level: 'silent', api_token: TOKEN } });
  // Announce a large body, send a few bytes of it, and wait: the answer must not wait for the rest.
  const head = `POST /api/v1/config HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"clusters": [`;
  const got = await rawExchange(g.port, head, (s) => s.includes('\r\n\r\n') && s.includes('}'));
  t.regex(got, /^HTTP\/1\.1 401 /);
  t.regex(got, /www-authenticate: Bearer/i);
  t.regex(got, /"code": "UNAUTHORIZED"/);
  // A refused upload larger than the body limit is a 401, not a 413: nothing about it is looked at.
  const big = await call(g.base, 'POST', '/api/v1/config', { body: 'x'.repeat(2 * 1024 * 1024) });
  t.is(big.status, 401);
});

test('the token never shows in dumps or logs, and REST cannot change it or the limits', async (t) => {
  const { logger, lines } = captureLogger();
  const trackedPort = await freePort();
  const g = await start(t, {
    admin: { log_level: 'info', api_token: TOKEN },
    // A second controller whose ended sessions stay listed for a minute.
    listeners: [{ name: 'tracked-ctl', spec: { protocol: 'HTTP', address: '127.0.0.1', port: trackedPort }, rules: CONTROLLER_RULES, options: { track: 60 } }],
  }, { logger });
  for (const p of ['/api/v1/config', '/api/v1/admin', '/api/v1/sessions']) {
    const r = await call(g.base, 'GET', p, { token: TOKEN });
    t.is(r.status, 200);
    t.false(r.text.includes(TOKEN), p);
  }
  // Session dumps (the calling request is one) show credentials redacted.
  const sessions = await call(g.base, 'GET', '/api/v1/sessions', { token: TOKEN });
  t.is(sessions.body[0].metadata.HTTP.headers.authorization, '<redacted>');
  t.is((await call(`http://127.0.0.1:${trackedPort}`, 'GET', '/api/v1/admin', { token: TOKEN })).status, 200);
  const all = await call(g.base, 'GET', '/api/v1/sessions', { token: TOKEN });
  const tracked = (all.body as Array<{ name: string; source: { origin: string } }>).find((x) => x.source.origin === 'tracked-ctl');
  t.truthy(tracked, all.text);
  const one = await call(g.base, 'GET', `/api/v1/sessions/${encodeURIComponent(tracked!.name)}`, { token: TOKEN });
  t.is(one.status, 200, one.text);
  t.is(one.body.metadata.HTTP.headers.authorization, '<redacted>');
  t.false(one.text.includes(TOKEN));
  for (const admin of [{ api_token: 'other' }, { api_token_file: '/etc/passwd' }, { limits: { api_rate: 0 } }]) {
    const r = await call(g.base, 'POST', '/api/v1/admin', { token: TOKEN, body: { admin } });
    t.is(r.status, 403, r.text);
    t.is(r.body.code, 'FORBIDDEN');
  }
  t.is((await call(g.base, 'GET', '/api/v1/config', { token: TOKEN })).status, 200, 'the token is unchanged');
  t.true(lines.some((l) => l.msg === 'REST API requires a bearer token' && l.source === 'admin.api_token'));
  t.false(JSON.stringify(lines).includes(TOKEN));
});

// ------------------------------------------------------------- token sources

test('L7MP_API_TOKEN wins over admin.api_token; api_token_file drops the final newline', async (t) => {
  const g = await start(t, { admin: { log_level: 'silent', api_token: 'from-config' } }, { env: { [TOKEN_ENV]: 'from-env' } });
  t.is((await call(g.base, 'GET', '/api/v1/admin', { token: 'from-env' })).status, 200);
  t.is((await call(g.base, 'GET', '/api/v1/admin', { token: 'from-config' })).status, 401);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-token-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'token');
  fs.writeFileSync(file, 'from-file\n', { mode: 0o600 });
  const h = await start(t, { admin: { log_level: 'silent', api_token_file: file } });
  t.is((await call(h.base, 'GET', '/api/v1/admin', { token: 'from-file' })).status, 200);
  t.is((await call(h.base, 'GET', '/api/v1/admin', { token: 'from-fil' })).status, 401);
  // An empty variable is "not set".
  const e = await start(t, { admin: { log_level: 'silent', api_token: 'from-config' } }, { env: { [TOKEN_ENV]: '' } });
  t.is((await call(e.base, 'GET', '/api/v1/admin', { token: 'from-config' })).status, 200);
});

test('bad token and limit settings stop the start with the field named', async (t) => {
  const port = await freePort();
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ api_token: 'a', api_token_file: '/x' }, 'admin.api_token'],
    [{ api_token: '' }, 'admin.api_token'],
    [{ api_token: 'has space' }, 'admin.api_token'],
    [{ api_token: 42 }, 'admin.api_token'],
    [{ api_token_file: '/nonexistent/l7mp-token' }, 'admin.api_token_file'],
    [{ limits: { api_rate: -1 } }, 'admin.limits.api_rate'],
    [{ limits: { api_burst: 0 } }, 'admin.limits.api_burst'],
    [{ limits: { api_rate: 'fast' } }, 'admin.limits.api_rate'],
  ];
  for (const [admin, field] of cases) {
    const err = await t.throwsAsync(startGateway({ config: controllerConfig(port, { admin: { log_level: 'silent', ...admin } }), logger: silentLogger(), env: NO_ENV }));
    t.is((err as GatewayError).code, 'INVALID_INPUT', JSON.stringify(admin));
    t.is((err as GatewayError).field, field, JSON.stringify(admin));
  }
  // Nothing was bound by the failed starts.
  const probe = net.createServer();
  const bound = await new Promise<boolean>((resolve) => { probe.once('error', () => resolve(false)); probe.listen(port, '127.0.0.1', () => resolve(true)); });
  if (bound) await new Promise((r) => probe.close(r));
  t.true(bound, `port ${port} is still free after the refused starts`);
});

// -------------------------------------------------------------------- TLS

interface Pki { dir: string; cert: string; key: string; encKey: string; encCert: string; otherKey: string }
let pki: Pki | undefined;
let pkiSkip: string | undefined;

test.before(() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-tls-'));
  const req = (keyOut: string, certOut: string, extra: string[]) => execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyOut, '-out', certOut, ...extra,
  ], { stdio: 'pipe' });
  try {
    req(path.join(dir, 'key.pem'), path.join(dir, 'cert.pem'), ['-nodes']);
    req(path.join(dir, 'enc-key.pem'), path.join(dir, 'enc-cert.pem'), ['-passout', 'pass:hunter2']);
    req(path.join(dir, 'other-key.pem'), path.join(dir, 'other-cert.pem'), ['-nodes']);
    pki = {
      dir,
      cert: path.join(dir, 'cert.pem'),
      key: path.join(dir, 'key.pem'),
      encCert: path.join(dir, 'enc-cert.pem'),
      encKey: path.join(dir, 'enc-key.pem'),
      otherKey: path.join(dir, 'other-key.pem'),
    };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    pkiSkip = `openssl could not make a test certificate: ${(err as Error).message.split('\n')[0]}`;
  }
});

test.after.always(() => {
  if (pki) fs.rmSync(pki.dir, { recursive: true, force: true });
});

function needPki(t: { log(...s: string[]): void; fail(s: string): void; pass(): void }): Pki | undefined {
  if (pki) return pki;
  if (process.env.CI === 'true') t.fail(pkiSkip ?? 'no PKI');
  else { t.log(`skipped: ${pkiSkip}`); t.pass(); }
  return undefined;
}

function tlsController(port: number, tls: Record<string, unknown>): Record<string, unknown> {
  return {
    admin: { log_level: 'silent', api_token: TOKEN },
    listeners: [{ name: 'controller-listener', spec: { protocol: 'HTTP', address: '127.0.0.1', port, tls }, rules: CONTROLLER_RULES }],
  };
}

test('TLS controller: HTTPS with a self-signed certificate, token required, plain HTTP refused', async (t) => {
  const p = needPki(t);
  if (!p) return;
  const port = await freePort();
  const gw = await startGateway({ config: tlsController(port, { cert_file: p.cert, key_file: p.key }), logger: silentLogger(), env: NO_ENV });
  t.teardown(() => gw.stop());
  const trusting = new Agent({ connect: { ca: fs.readFileSync(p.cert) } });
  t.teardown(() => trusting.close());
  const base = `https://127.0.0.1:${port}`;
  const ok = await call(base, 'GET', '/api/v1/config', { token: TOKEN, dispatcher: trusting });
  t.is(ok.status, 200);
  t.is(ok.body.listeners[0].spec.tls.cert_file, p.cert);
  const sessions = await call(base, 'GET', '/api/v1/sessions', { token: TOKEN, dispatcher: trusting });
  t.is(sessions.body[0].metadata.HTTP.url.protocol, 'https:');
  t.is((await call(base, 'GET', '/api/v1/config', { dispatcher: trusting })).status, 401);
  // The client checks the server: without the CA the handshake fails.
  const strict = new Agent();
  t.teardown(() => strict.close());
  await t.throwsAsync(call(base, 'GET', '/api/v1/config', { token: TOKEN, dispatcher: strict }));
  // Plain HTTP on the TLS port gets no HTTP answer.
  await t.throwsAsync(call(`http://127.0.0.1:${port}`, 'GET', '/api/v1/config', { token: TOKEN }));
  const raw = await rawExchange(port, 'GET /api/v1/config HTTP/1.1\r\nHost: x\r\n\r\n', () => false).catch((e: Error) => e.message);
  t.notRegex(raw, /HTTP\/1\.1 200/);
});

test('TLS: a listener whose protocol serves no TLS, or any cluster, is refused with tls, not opened in the clear (TCP, UDP, JSONSocket transports, HTTP and WebSocket clusters)', async (t) => {
  const p = needPki(t);
  if (!p) return;
  const g = await start(t, { admin: { log_level: 'silent', file_root: p.dir } });
  const tls = { cert_file: p.cert, key_file: p.key };
  const port = await freePort();
  const before = await configOf(g.base);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ protocol: 'TCP', address: '127.0.0.1', port, tls }, 'listener.spec.tls'],
    [{ protocol: 'UDP', address: '127.0.0.1', port, tls }, 'listener.spec.tls'],
    [{ protocol: 'JSONSocket', transport: { protocol: 'UDP', address: '127.0.0.1', port, tls } }, 'listener.spec.transport.tls'],
  ];
  for (const [spec, field] of cases) {
    const r = await call(g.base, 'POST', '/api/v1/listeners', { body: { listener: { name: 'plain', spec, rules: CONTROLLER_RULES } } });
    t.is(r.status, 400, `${JSON.stringify(spec)}: ${r.text}`);
    t.is(r.body.field, field, r.text);
    t.regex(r.body.content, /listeners do not serve TLS/);
  }
  t.false(await tcpListening(port), 'nothing listens on the port');
  const clusters: Array<[Record<string, unknown>, string]> = [
    [{ protocol: 'HTTP', port, tls: true }, 'cluster.spec.tls'],
    [{ protocol: 'WebSocket', port, tls: true }, 'cluster.spec.tls'],
    [{ protocol: 'TCP', port, tls: {} }, 'cluster.spec.tls'],
    [{ protocol: 'JSONSocket', transport: { protocol: 'WebSocket', port, tls: true } }, 'cluster.spec.transport.tls'],
  ];
  for (const [spec, field] of clusters) {
    const r = await call(g.base, 'POST', '/api/v1/clusters', { body: { cluster: { name: 'up', spec, endpoints: [{ spec: { address: '127.0.0.1' } }] } } });
    t.is(r.status, 400, `${JSON.stringify(spec)}: ${r.text}`);
    t.is(r.body.field, field, r.text);
    t.regex(r.body.content, /clusters do not connect with TLS/);
  }
  t.deepEqual(await configOf(g.base), before, 'the refused listeners and clusters changed nothing');
  // Saying no TLS is fine.
  t.is((await call(g.base, 'POST', '/api/v1/clusters', { body: { cluster: { name: 'up', spec: { protocol: 'HTTP', port, tls: false }, endpoints: [] } } })).status, 200);
});

test('TLS: an encrypted key needs its passphrase, which dumps redact; bad TLS settings get 400 naming the field', async (t) => {
  const p = needPki(t);
  if (!p) return;
  // REST may read TLS files only under admin.file_root (core/confine.ts).
  const g = await start(t, { admin: { log_level: 'silent', file_root: p.dir } });
  const listener = (name: string, port: number, tls: unknown) => ({ listener: { name, spec: { protocol: 'HTTP', address: '127.0.0.1', port, tls }, rules: CONTROLLER_RULES } });
  const port = await freePort();
  // Neither is read: a file past the PEM size bound, and a FIFO (a read would block the event loop).
  const big = path.join(p.dir, 'big.pem');
  fs.writeFileSync(big, Buffer.concat([fs.readFileSync(p.cert), Buffer.alloc(2 << 20, 0x41)]));
  const fifo = path.join(p.dir, 'fifo.pem');
  if (!fs.existsSync(fifo)) execFileSync('mkfifo', [fifo]);
  const before = await configOf(g.base);
  const bad: Array<[unknown, string]> = [
    [{ cert_file: `${p.dir}/nonexistent-cert.pem`, key_file: p.key }, 'listener.spec.tls.cert_file'],
    [{ cert_file: p.cert, key_file: `${p.dir}/nonexistent-key.pem` }, 'listener.spec.tls.key_file'],
    [{ cert_file: p.cert }, 'listener.spec.tls'],
    [{ cert_file: p.dir, key_file: p.key }, 'listener.spec.tls.cert_file'],
    [{ cert_file: p.key, key_file: p.key }, 'listener.spec.tls.cert_file'],
    [{ cert_file: p.cert, key_file: p.otherKey }, 'listener.spec.tls.key_file'],
    [{ cert_file: p.encCert, key_file: p.encKey }, 'listener.spec.tls.key_file'],
    [{ cert_file: p.encCert, key_file: p.encKey, passphrase: 'wrong' }, 'listener.spec.tls.key_file'],
    ['yes', 'listener.spec.tls'],
    [{ cert_file: big, key_file: p.key }, 'listener.spec.tls.cert_file'],
    [{ cert_file: p.cert, key_file: fifo }, 'listener.spec.tls.key_file'],
  ];
  for (const [tls, field] of bad) {
    const r = await call(g.base, 'POST', '/api/v1/listeners', { body: listener('tls-bad', port, tls) });
    t.is(r.status, 400, `${JSON.stringify(tls)}: ${r.text}`);
    t.true(String(r.body.field).startsWith(field), `${JSON.stringify(tls)}: field ${r.body.field}, want ${field}`);
  }
  const outside = await call(g.base, 'POST', '/api/v1/listeners', { body: listener('tls-bad', port, { cert_file: '/etc/ssl/nonexistent.pem', key_file: p.key }) });
  t.is(outside.status, 403, outside.text);
  t.is(outside.body.field, 'listener.spec.tls.cert_file');
  t.deepEqual(await configOf(g.base), before, 'the refused listeners changed nothing');
  const tooBig = await call(g.base, 'POST', '/api/v1/listeners', { body: listener('tls-bad', port, { cert_file: big, key_file: p.key }) });
  t.regex(tooBig.body.content, /more than a PEM file's 1048576/);
  const noPass = await call(g.base, 'POST', '/api/v1/listeners', { body: listener('tls-bad', port, { cert_file: p.encCert, key_file: p.encKey }) });
  t.regex(noPass.body.content, /passphrase/);

  const r = await call(g.base, 'POST', '/api/v1/listeners', { body: listener('tls-enc', port, { cert_file: p.encCert, key_file: p.encKey, passphrase: 'hunter2' }) });
  t.is(r.status, 200, r.text);
  const dumped = await call(g.base, 'GET', '/api/v1/listeners/tls-enc');
  t.is(dumped.body.spec.tls.passphrase, '<redacted>');
  t.false((await call(g.base, 'GET', '/api/v1/config')).text.includes('hunter2'));
  const trusting = new Agent({ connect: { ca: fs.readFileSync(p.encCert) } });
  t.teardown(() => trusting.close());
  t.is((await call(`https://127.0.0.1:${port}`, 'GET', '/api/v1/admin', { dispatcher: trusting })).status, 200);
});

// -------------------------------------------------------------- rate limit

test('rate limit: 429 with Retry-After and the l7mp body, per client, checked before the token, then recovers', async (t) => {
  // A burst of 2, then one call per 5 s: the four calls below would have to take 5 s to refill a token.
  const g = await start(t, { admin: { log_level: 'silent', api_token: TOKEN, limits: { api_rate: 0.2, api_burst: 2 } } });
  for (let i = 0; i < 2; i++) t.is((await call(g.base, 'GET', '/api/v1/admin', { token: TOKEN })).status, 200, `request ${i + 1}`);
  const limited = await call(g.base, 'GET', '/api/v1/admin', { token: TOKEN });
  t.is(limited.status, 429, limited.text);
  t.like(limited.body, { status: 429, message: 'Too Many Requests', code: 'RATE_LIMITED' });
  t.regex(limited.body.content, /0\.2\/s \(burst 2\)/);
  const retryAfter = Number(limited.headers.get('retry-after'));
  t.true(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${limited.headers.get('retry-after')}`);
  // Without the token it is still 429: guessing tokens is rate limited too.
  t.is((await call(g.base, 'GET', '/api/v1/admin')).status, 429);
  // Another client address has its own bucket.
  const other = new Agent({ localAddress: '127.0.0.2' });
  t.teardown(() => other.close());
  const fromOther = await call(g.base, 'GET', '/api/v1/admin', { token: TOKEN, dispatcher: other }).catch((e: Error) => e);
  if (fromOther instanceof Error) t.log(`127.0.0.2 not usable here (${fromOther.message}); per-client check skipped`);
  else t.is(fromOther.status, 200);
  await new Promise((r) => setTimeout(r, retryAfter * 1000 + 100));
  t.is((await call(g.base, 'GET', '/api/v1/admin', { token: TOKEN })).status, 200, 'recovered after Retry-After');
});

test('RateLimiter: refills at the rate, caps at the burst, and keeps its map bounded', (t) => {
  let now = 0;
  const rl = new RateLimiter(2, 4, 3, () => now);
  for (let i = 0; i < 4; i++) t.true(rl.take('a').ok);
  const r = rl.take('a');
  t.false(r.ok);
  if (!r.ok) t.is(r.retryAfterSec, 1);
  now += 500; // one token back
  t.true(rl.take('a').ok);
  t.false(rl.take('a').ok);
  now += 60_000; // idle: full again, never more than the burst
  for (let i = 0; i < 4; i++) t.true(rl.take('a').ok);
  t.false(rl.take('a').ok);

  // Bounded: idle (refilled) clients go first, then the least recently seen.
  t.true(rl.take('b').ok);
  t.true(rl.take('c').ok);
  t.is(rl.size, 3);
  now += 10_000; // a, b and c all refilled
  t.true(rl.take('d').ok);
  t.true(rl.size <= 3);
  for (let i = 0; i < 100; i++) rl.take(`flood-${i}`);
  t.is(rl.size, 3);
  // A client evicted from the map starts over with a full bucket: the cost of the bound.
  const g = new ApiGuard({ rate: 0 });
  t.is(g.limiter, undefined, 'api_rate 0 turns the limit off');
  t.is(g.admit({ headers: {}, remoteAddress: 'x' }), undefined);
});

// -------------------------------------------------------------- body limit

test('body limit: 413 with the l7mp body, for a Content-Length and for a chunked upload', async (t) => {
  const g = await start(t, { admin: { log_level: 'silent', limits: { max_body_bytes: 1000 } } });
  const cluster = (pad: number) => JSON.stringify({ cluster: { name: 'c-pad', spec: { protocol: 'Echo' }, options: { pad: 'x'.repeat(pad) } } });
  const big = await call(g.base, 'POST', '/api/v1/clusters', { body: cluster(2000) });
  t.is(big.status, 413, big.text);
  t.like(big.body, { status: 413, message: 'Payload Too Large', code: 'BODY_TOO_LARGE' });
  t.regex(big.body.content, /limit of 1000 bytes/);
  // Chunked: no Content-Length to check up front; the limit cuts the upload short.
  const chunk = cluster(3000);
  const chunked = `POST /api/v1/clusters HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n`;
  const got = await rawExchange(g.port, chunked, (s) => /\r\n\r\n[\s\S]*\}/.test(s));
  t.regex(got, /^HTTP\/1\.1 413 /);
  t.regex(got, /"code": "BODY_TOO_LARGE"/);
  t.is((await call(g.base, 'GET', '/api/v1/clusters/c-pad')).status, 404, 'nothing was added');
  const small = await call(g.base, 'POST', '/api/v1/clusters', { body: cluster(100) });
  t.is(small.status, 200, small.text);
});

// ------------------------------------------------------ static-only protocols

test('REST can never add a STDIO-fork cluster or listener: 403 FORBIDDEN before any other check', async (t) => {
  const g = await start(t);
  const before = await configOf(g.base);
  const fork = { protocol: 'STDIO-fork', cmd: 'id' };
  const cases: Array<[string, unknown, string]> = [
    ['/api/v1/clusters', { cluster: { name: 'fork', spec: fork } }, 'cluster.spec.protocol'],
    ['/api/v1/clusters', { cluster: { name: 'fork', spec: { ...fork, protocol: 'stdio-FORK' } } }, 'cluster.spec.protocol'],
    ['/api/v1/listeners', { listener: { name: 'fork-l', spec: fork, rules: [] } }, 'listener.spec.protocol'],
    ['/api/v1/routes', { route: { name: 'fork-r', destination: { name: 'fork', spec: fork } } }, 'route.destination.spec.protocol'],
    ['/api/v1/routes', { route: { name: 'fork-r', destination: 'x', ingress: [{ spec: fork }] } }, 'route.ingress[0].spec.protocol'],
    ['/api/v1/config', { clusters: [{ name: 'fork', spec: fork }] }, 'clusters[0].spec.protocol'],
    ['/api/v1/listeners', {
      listener: { name: 'fork-l2', spec: { protocol: 'TCP', port: 0 }, rules: [{ action: { route: { destination: { spec: fork } } } }] },
    }, 'listener.rules[0].action.route.destination.spec.protocol'],
  ];
  for (const [p, body, field] of cases) {
    const r = await call(g.base, 'POST', p, { body });
    t.is(r.status, 403, `${p} ${JSON.stringify(body)}: ${r.text}`);
    t.is(r.body.code, 'FORBIDDEN');
    t.is(r.body.field, field);
    t.regex(r.body.content, /static config/);
  }
  t.deepEqual(await configOf(g.base), before);
});

test('the static config gets past the static-only check (STDIO-fork then needs the admin.stdio_fork allow-list)', async (t) => {
  const port = await freePort();
  const err = await t.throwsAsync(startGateway({
    config: controllerConfig(port, { admin: { log_level: 'silent' }, clusters: [{ name: 'fork', spec: { protocol: 'STDIO-fork', cmd: 'id' } }] }),
    logger: silentLogger(),
    env: NO_ENV,
  }));
  t.is((err as GatewayError).code, 'FORBIDDEN');
  t.regex((err as Error).message, /admin\.stdio_fork\.commands/);
});

// ---------------------------------------------------------- loopback default

function nonLoopbackIPv4(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

function canConnect(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, host);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

test('the default controller and an inline controller without address bind 127.0.0.1', async (t) => {
  const dflt = DEFAULT_CONFIG.listeners[0]!;
  t.is(dflt.spec.address, '127.0.0.1');
  t.is((dflt.rules[0]!.action.route.destination.spec as { protocol: string }).protocol, 'L7mpController');

  const port = await freePort();
  const gw = await startGateway({
    config: { admin: { log_level: 'silent' }, listeners: [{ name: 'ctl', spec: { protocol: 'HTTP', port }, rules: CONTROLLER_RULES }] },
    logger: silentLogger(),
    env: NO_ENV,
  });
  t.teardown(() => gw.stop());
  const base = `http://127.0.0.1:${port}`;
  t.is((await call(base, 'GET', '/api/v1/listeners/ctl')).body.spec.address, '127.0.0.1');
  // One added over REST without an address binds loopback too.
  const port2 = await freePort();
  const r = await call(base, 'POST', '/api/v1/listeners', { body: { listener: { name: 'ctl2', spec: { protocol: 'HTTP', port: port2 }, rules: CONTROLLER_RULES } } });
  t.is(r.status, 200, r.text);
  t.is((await call(base, 'GET', '/api/v1/listeners/ctl2')).body.spec.address, '127.0.0.1');
  const ip = nonLoopbackIPv4();
  if (ip === undefined) {
    t.log('no non-loopback IPv4 address on this host: reachability check skipped');
  } else {
    t.false(await canConnect(port, ip), `controller reachable on ${ip}`);
    t.false(await canConnect(port2, ip), `REST-added controller reachable on ${ip}`);
    t.true(await canConnect(port, '127.0.0.1'));
  }
});

test('exposure warnings: non-loopback without a token, or with a token but no TLS', (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1', '[::1]']) t.true(isLoopback(a), a);
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.com', '::ffff:10.0.0.1']) t.false(isLoopback(a), a);
  const b = (address: string, tls = false) => ({ listener: 'ctl', address, port: 1234, tls });
  t.deepEqual(exposureWarnings([b('127.0.0.1'), b('::1')], false), []);
  const open = exposureWarnings([b('0.0.0.0')], false);
  t.is(open.length, 1);
  t.regex(open[0]!, /no API token is set/);
  t.regex(open[0]!, /0\.0\.0\.0:1234/);
  const clear = exposureWarnings([b('10.0.0.1')], true);
  t.is(clear.length, 1);
  t.regex(clear[0]!, /clear text/);
  t.deepEqual(exposureWarnings([b('0.0.0.0', true)], true), []);
});

test('startup logs a warning for a controller reachable from other hosts', async (t) => {
  const { logger, lines } = captureLogger();
  const port = await freePort();
  // A token is set, so binding all interfaces here exposes nothing; the warning is about clear text.
  const gw = await startGateway({
    config: {
      admin: { log_level: 'info', api_token: TOKEN },
      rulelists: [{ name: 'ctl-rules', rules: CONTROLLER_RULES }],
      listeners: [{ name: 'ctl', spec: { protocol: 'HTTP', address: '0.0.0.0', port }, rules: 'ctl-rules' }],
    },
    logger,
    env: NO_ENV,
  });
  t.teardown(() => gw.stop());
  const warns = lines.filter((l) => l.level === LEVELS.warn);
  t.true(warns.some((l) => /controller listener "ctl" on 0\.0\.0\.0:\d+ .*clear text/.test(l.msg)), JSON.stringify(warns));

  const quiet = captureLogger();
  const port2 = await freePort();
  const gw2 = await startGateway({ config: controllerConfig(port2, { admin: { log_level: 'info' } }), logger: quiet.logger, env: NO_ENV });
  t.teardown(() => gw2.stop());
  t.false(quiet.lines.some((l) => l.level === LEVELS.warn && /controller listener/.test(l.msg)), 'loopback controller: no warning');
});
