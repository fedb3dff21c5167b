// The API docs: the spec at /api/v1/openapi.yaml (the text of
// openapi/l7mp.yaml, embedded at `npm run gen` time) and swagger-ui at
// /api/v1/docs, with every asset served by the controller itself (no CDN).
// The static pages need no token; the API they call does.

import test from 'ava';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { api, startGw } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const QUIET_ADMIN = { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 } };

/** A GET without Accept-Encoding (fetch asks for gzip and hides it): the raw answer. */
function rawGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** Every src/href of an HTML page. */
function references(html: string): string[] {
  return [...html.matchAll(/\b(?:src|href)\s*=\s*"([^"]*)"/gi)].map((m) => m[1]!);
}

test('GET /api/v1/openapi.yaml serves openapi/l7mp.yaml as application/yaml', async (t) => {
  const { base } = await startGw(t, {});
  const res = await fetch(`${base}/api/v1/openapi.yaml`);
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^application\/yaml\b/);
  const text = await res.text();
  t.is(text, readFileSync(path.join(ROOT, 'openapi/l7mp.yaml'), 'utf8'), 'the embedded spec is stale: run `npm run gen`');
  const spec = parse(text) as { openapi: string; paths: Record<string, Record<string, { operationId?: string }>> };
  t.regex(spec.openapi, /^3\./);
  t.is(spec.paths['/api/v1/listeners']?.post?.operationId, 'addListener');
  // A query string does not change what is served.
  t.is((await fetch(`${base}/api/v1/openapi.yaml?v=1`)).status, 200);
});

test('GET /api/v1/docs renders the spec with swagger-ui from local assets only', async (t) => {
  const { base } = await startGw(t, {});
  for (const page of ['/api/v1/docs', '/api/v1/docs/']) {
    const res = await fetch(base + page);
    t.is(res.status, 200, page);
    t.regex(res.headers.get('content-type') ?? '', /^text\/html\b/);
    t.regex(res.headers.get('content-security-policy') ?? '', /script-src 'self';/);
    const html = await res.text();
    const refs = references(html);
    t.true(refs.length >= 4, refs.join(' '));
    for (const ref of refs) {
      t.regex(ref, /^\/(?!\/)/, `${ref} is not a local path`);
      const asset = await fetch(base + ref);
      t.is(asset.status, 200, ref);
      t.true((await asset.arrayBuffer()).byteLength > 0, ref);
    }
    t.true(refs.includes('/api/v1/docs/swagger-ui-bundle.js'));
    t.true(refs.includes('/api/v1/docs/swagger-ui.css'));
    t.true(refs.includes('/api/v1/openapi.yaml'), 'the noscript link');
  }
  // The initializer points swagger-ui at our spec and nowhere else.
  const init = await (await fetch(`${base}/api/v1/docs/init.js`)).text();
  t.regex(init, /url: '\/api\/v1\/openapi\.yaml'/);
  t.regex(init, /validatorUrl: null/);
  t.notRegex(init, /https?:/);
});

test('swagger-ui assets are the installed package, gzip-compressed for clients that accept it', async (t) => {
  const { base } = await startGw(t, {});
  const dist = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  const file = readFileSync(path.join(dist, 'swagger-ui-bundle.js'));
  const plain = await rawGet(`${base}/api/v1/docs/swagger-ui-bundle.js`);
  t.is(plain.status, 200);
  t.is(plain.headers['content-encoding'], undefined);
  t.regex(plain.headers['content-type'] ?? '', /^text\/javascript\b/);
  t.true(plain.body.equals(file));
  const gz = await rawGet(`${base}/api/v1/docs/swagger-ui-bundle.js`, { 'accept-encoding': 'br, gzip;q=0.8' });
  t.is(gz.headers['content-encoding'], 'gzip');
  t.true(gz.body.byteLength < file.byteLength / 2);
  const refused = await rawGet(`${base}/api/v1/docs/swagger-ui-bundle.js`, { 'accept-encoding': 'gzip;q=0' });
  t.is(refused.headers['content-encoding'], undefined);
  // Only the listed files: no path walks into node_modules.
  for (const p of ['/api/v1/docs/package.json', '/api/v1/docs/../../../package.json', '/api/v1/docs/%2e%2e/package.json', '/ui/../api/v1/openapi.yaml/x']) {
    const r = await rawGet(base + p);
    t.is(r.status, 404, p);
    t.notThrows(() => JSON.parse(r.body.toString()), p);
  }
  // Other methods are API calls, and there are none on these paths.
  t.is((await api(base, 'POST', '/ui', {})).status, 404);
});

test('with a token: the spec, the docs and the dashboard page are public, the API is not', async (t) => {
  const { base } = await startGw(t, { admin: { ...QUIET_ADMIN, api_token: 'docs-token-5678' } });
  for (const p of ['/api/v1/openapi.yaml', '/api/v1/docs', '/api/v1/docs/swagger-ui.css', '/api/v1/docs/swagger-ui-bundle.js', '/api/v1/docs/init.js', '/ui', '/ui/', '/ui/app.js', '/ui/app.css']) {
    t.is((await fetch(base + p)).status, 200, p);
  }
  t.is((await api(base, 'GET', '/api/v1/config')).status, 401);
  t.is((await api(base, 'GET', '/api/v1/sessions')).status, 401);
  // A path that only looks like a page, or a page with another method, still needs the token.
  t.is((await api(base, 'GET', '/ui/../api/v1/config')).status, 401);
  t.is((await api(base, 'DELETE', '/ui')).status, 401);
  const authed = await fetch(`${base}/api/v1/config`, { headers: { authorization: 'Bearer docs-token-5678' } });
  t.is(authed.status, 200);
});
