// The controller's static pages: the live dashboard (/ui), the OpenAPI spec
// (/api/v1/openapi.yaml) and its rendering with swagger-ui (/api/v1/docs).
//
// These carry no gateway data: the dashboard and swagger-ui fetch everything
// through the REST API, with the bearer token when one is configured. So they
// are served without the token (but rate limited like every call), which lets
// a browser load the page that then asks for the token. The spec is the
// published API description, the same text as in the source repository.
//
// Everything is served from memory: the dashboard and the spec are embedded
// in the compiled modules (the gateway image ships dist/ and production
// node_modules, not the source tree), swagger-ui's files come from the
// `swagger-ui-dist` package and are read once, on first use.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { HttpExchange } from '../protocols/types.js';
import { OPENAPI_YAML } from './generated/spec.js';
import { DOCS_HTML, DOCS_INIT_JS } from './ui/docs-page.js';
import { UI_CSS, UI_HTML, UI_JS } from './ui/dashboard.js';

/** Scripts and styles from this origin only; nothing inline, nothing from elsewhere. */
const CSP_UI = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
// swagger-ui (React) sets style attributes on some elements.
const CSP_DOCS = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const COMMON_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

interface Asset {
  readonly type: string;
  readonly csp?: string;
  /** The body, built on first use and kept. */
  body(): Buffer;
}

function text(type: string, s: string, csp?: string): Asset {
  let buf: Buffer | undefined;
  return { type, ...(csp ? { csp } : {}), body: () => (buf ??= Buffer.from(s, 'utf8')) };
}

let swaggerDir: string | undefined;

/** Where swagger-ui-dist is installed; its package has no `exports`, so package.json resolves. */
function swaggerFile(name: string): string {
  swaggerDir ??= path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  return path.join(swaggerDir, name);
}

function swagger(type: string, name: string): Asset {
  let buf: Buffer | undefined;
  return { type, body: () => (buf ??= fs.readFileSync(swaggerFile(name))) };
}

const ASSETS = new Map<string, Asset>([
  ['/ui', text('text/html; charset=utf-8', UI_HTML, CSP_UI)],
  ['/ui/', text('text/html; charset=utf-8', UI_HTML, CSP_UI)],
  ['/ui/app.js', text('text/javascript; charset=utf-8', UI_JS)],
  ['/ui/app.css', text('text/css; charset=utf-8', UI_CSS)],
  ['/api/v1/openapi.yaml', text('application/yaml; charset=utf-8', OPENAPI_YAML)],
  ['/api/v1/docs', text('text/html; charset=utf-8', DOCS_HTML, CSP_DOCS)],
  ['/api/v1/docs/', text('text/html; charset=utf-8', DOCS_HTML, CSP_DOCS)],
  ['/api/v1/docs/init.js', text('text/javascript; charset=utf-8', DOCS_INIT_JS)],
  ['/api/v1/docs/swagger-ui.css', swagger('text/css; charset=utf-8', 'swagger-ui.css')],
  ['/api/v1/docs/swagger-ui-bundle.js', swagger('text/javascript; charset=utf-8', 'swagger-ui-bundle.js')],
  ['/api/v1/docs/favicon-32x32.png', swagger('image/png', 'favicon-32x32.png')],
  ['/api/v1/docs/favicon-16x16.png', swagger('image/png', 'favicon-16x16.png')],
]);

/** The request paths served here (for the guard: these need no token). */
export function isStaticPath(method: string, url: string): boolean {
  if (method.toUpperCase() !== 'GET') return false;
  const q = url.indexOf('?');
  return ASSETS.has(q < 0 ? url : url.slice(0, q));
}

/** Compressed once per asset, for clients that accept gzip (the swagger bundle is 1.7 MB). */
const gzipped = new WeakMap<Asset, Buffer>();

function acceptsGzip(h: string | string[] | undefined): boolean {
  const v = Array.isArray(h) ? h.join(',') : h ?? '';
  return v.split(',').some((part) => {
    const [coding, ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    if (coding !== 'gzip') return false;
    const q = params.find((x) => x.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/**
 * Serve `pathname` if it is a static asset. Returns undefined when it is not
 * one, else the label the REST metrics count the call under.
 */
export function serveStatic(ex: HttpExchange, method: string, pathname: string): string | undefined {
  if (method !== 'GET') return undefined;
  const asset = ASSETS.get(pathname);
  if (!asset) return undefined;
  let body = asset.body();
  const headers: Record<string, string> = { ...COMMON_HEADERS, 'content-type': asset.type };
  if (asset.csp) {
    headers['content-security-policy'] = asset.csp;
    headers['x-frame-options'] = 'DENY';
  }
  if (body.byteLength > 4096 && !asset.type.startsWith('image/')) {
    headers.vary = 'accept-encoding';
    if (acceptsGzip(ex.headers['accept-encoding'])) {
      let gz = gzipped.get(asset);
      if (!gz) {
        gz = gzipSync(body);
        gzipped.set(asset, gz);
      }
      body = gz;
      headers['content-encoding'] = 'gzip';
    }
  }
  ex.respond(200, headers, body);
  if (pathname.startsWith('/ui')) return 'staticUi';
  return pathname === '/api/v1/openapi.yaml' ? 'staticSpec' : 'staticDocs';
}
