// The REST dispatcher behind the L7mpController cluster: match the route from
// the generated table, parse a JSON or YAML body, validate it against the
// generated schema, run the handler, and answer in l7mp's body shapes.

import { Value } from 'typebox/value';
import { parse as parseYaml } from 'yaml';
import { GatewayError, asGatewayError, invalid } from '../core/errors.js';
import { exceedsDepth } from '../core/depth.js';
import { DEFAULT_EDGE_LIMITS, type EdgeLimitSettings } from '../core/limits.js';
import type { Gateway } from '../core/gateway.js';
import type { HttpExchange } from '../protocols/types.js';
import { routes } from './generated/routes.js';
import { requestBodySchemas } from './generated/schemas.js';
import { handlers } from './handlers.js';
import { JSON_TYPES, YAML_TYPES, mediaType } from './media.js';
import { serveStatic } from './static.js';

/**
 * How deep a REST body may nest. A real configuration nests about a dozen
 * levels (config.listeners[].rules[].action.route.destination.spec...); the
 * validator, the object graph and the dumps walk values recursively, so a body
 * nested thousands of levels deep would overflow the stack (a 500) instead of
 * being refused.
 */
export const MAX_BODY_DEPTH = 64;

/** Refuse values nested deeper than MAX_BODY_DEPTH; iterative, so the check cannot overflow itself. */
export function checkDepth(value: unknown, what = 'body'): void {
  if (exceedsDepth(value, MAX_BODY_DEPTH)) throw invalid(what, `is nested deeper than ${MAX_BODY_DEPTH} levels`);
}

/** The limits a REST body parse needs (admin.limits). */
export type BodyLimits = Pick<EdgeLimitSettings, 'yaml_body_bytes' | 'yaml_aliases'>;

/** `refused` counts a body turned away by a limit (observe/refusals.ts). */
export function parseBody(
  raw: Uint8Array, contentType: string | string[] | undefined, limits: BodyLimits = DEFAULT_EDGE_LIMITS,
  refused: (reason: 'body_size' | 'yaml_aliases') => void = () => {},
): unknown {
  const value = parseBodyText(raw, contentType, limits, refused);
  checkDepth(value);
  return value;
}

/** The message the yaml package throws when a document resolves more aliases than maxAliasCount. */
const YAML_ALIAS_ERROR = /excessive alias count/i;

function parseBodyText(raw: Uint8Array, contentType: string | string[] | undefined, limits: BodyLimits, refused: (reason: 'body_size' | 'yaml_aliases') => void): unknown {
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
  const type = mediaType(contentType);
  if (text.trim() === '') throw invalid('body', 'is empty; this operation needs a JSON or YAML body');
  if (JSON_TYPES.has(type)) {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new GatewayError('INVALID_INPUT', `Invalid JSON format in request: ${(err as Error).message}`, 'body');
    }
  }
  if (YAML_TYPES.has(type)) {
    // The controller cluster refuses a larger body before reading it; this guards other callers.
    if (raw.byteLength > limits.yaml_body_bytes) {
      refused('body_size');
      throw new GatewayError('BODY_TOO_LARGE', `a YAML body may be ${limits.yaml_body_bytes} bytes at most (admin.limits.yaml_body_bytes); send larger ones as JSON`);
    }
    try {
      // logLevel 'error': parse errors still throw, but a client's odd YAML (unknown tags,
      // collection keys) must not make the library print process warnings to stderr.
      return parseYaml(text, { maxAliasCount: limits.yaml_aliases, uniqueKeys: true, logLevel: 'error' });
    } catch (err) {
      if (YAML_ALIAS_ERROR.test((err as Error).message)) {
        refused('yaml_aliases');
        throw new GatewayError('INVALID_INPUT', `Invalid YAML in request: more than ${limits.yaml_aliases} aliases (admin.limits.yaml_aliases)`, 'body');
      }
      throw new GatewayError('INVALID_INPUT', `Invalid YAML format in request: ${(err as Error).message.split('\n')[0]}`, 'body');
    }
  }
  throw new GatewayError('UNSUPPORTED_MEDIA', `unsupported Content-Type "${type || '(none)'}": send application/json or text/x-yaml`);
}

/** A path parameter, percent-decoded; malformed escapes (`%E0%A4%A`, `%ZZ`) are the client's error, not ours. */
function decodePathParam(name: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw invalid(name, `is not valid percent-encoded UTF-8 in the path: "${raw.slice(0, 100)}"`);
  }
}

function fieldOf(instancePath: string): string {
  return instancePath.replace(/^\//, '').split('/').map((s) => (/^\d+$/.test(s) ? `[${s}]` : s)).join('.').replace(/\.\[/g, '[') || 'body';
}

/** Validate against the spec's schema; report the most specific error. */
export function checkSchema(operationId: string, body: unknown): void {
  const schema = requestBodySchemas[operationId as keyof typeof requestBodySchemas];
  if (!schema || Value.Check(schema, body)) return;
  const errors = Value.Errors(schema, body);
  let best = errors[0];
  for (const e of errors) if (best === undefined || e.instancePath.length > best.instancePath.length) best = e;
  const field = best ? fieldOf(best.instancePath) : 'body';
  throw invalid(field, best?.message ?? 'does not match the schema');
}

function formatJson(v: unknown, format: string | null): string {
  if (format === 'terse') return JSON.stringify(v);
  return JSON.stringify(v, null, 2);
}

/**
 * With worker processes (docs/workers.md) a change reaches every worker or
 * none: prepared in all of them, applied here (where it is validated against
 * the whole graph), then committed in all or aborted in all.
 */
async function withWorkers(gw: Gateway, method: string, operationId: string, req: { params: Record<string, string>; recursive: boolean; body: unknown }, run: () => unknown): Promise<unknown> {
  const w = gw.workers;
  // Session calls go to the worker that owns the session (api/handlers.ts), not to every worker.
  if (w === undefined || method === 'GET' || operationId.toLowerCase().includes('session')) return run();
  const gen = await w.prepareOp({ operationId, params: req.params, recursive: req.recursive, body: req.body });
  let result: unknown;
  try {
    result = await run();
  } catch (err) {
    w.abortOp(gen);
    throw err;
  }
  await w.commitOp(gen);
  return result;
}

export async function handleApi(gw: Gateway, ex: HttpExchange, body: Uint8Array, session?: string): Promise<void> {
  const started = Date.now();
  const url = new URL(ex.url, 'http://controller');
  const path = url.pathname;
  const method = ex.method.toUpperCase();
  let operationId = 'unknown';
  let status = 200;
  try {
    // The dashboard, the spec and the docs (no data; see static.ts).
    const asset = serveStatic(ex, method, path);
    if (asset !== undefined) {
      gw.observer?.onApiCall?.(asset, 200, Date.now() - started);
      return;
    }
    let params: Record<string, string> | undefined;
    let route: (typeof routes)[number] | undefined;
    for (const r of routes) {
      if (r.method !== method) continue;
      const m = r.pattern.exec(path);
      if (!m) continue;
      params = {};
      r.params.forEach((p, i) => { params![p] = decodePathParam(p, m[i + 1]!); });
      route = r;
      break;
    }
    if (!route || !params) throw new GatewayError('NOT_FOUND', 'Unknown API operation');
    operationId = route.operationId;
    let parsed: unknown;
    if (route.hasBody) {
      parsed = parseBody(body, ex.headers['content-type'], gw.limits.settings,
        (reason) => gw.refusals.refuse(reason, '', { remote: ex.remoteAddress, operation: route!.operationId }));
      checkSchema(route.operationId, parsed);
    }
    const req = { params, recursive: url.searchParams.get('recursive') === 'true', body: parsed, session };
    const result = await withWorkers(gw, method, route.operationId, req, () => handlers[route!.operationId](gw, req));
    if (method === 'GET') {
      ex.respond(200, { 'content-type': 'application/json' }, formatJson(result, url.searchParams.get('format')));
    } else {
      ex.respond(200, { 'content-type': 'application/json' }, JSON.stringify({ status: 200, message: 'OK' }));
    }
  } catch (err) {
    const e = asGatewayError(err);
    status = e.status;
    if (e.code === 'INTERNAL') gw.log.error({ err, operationId }, 'REST handler failed');
    const out = e.toBody();
    ex.respond(e.status, { 'content-type': 'application/json' }, JSON.stringify(out, null, 4));
  }
  gw.log.verbose({ method, path, operationId, status, ms: Date.now() - started }, 'REST call');
  gw.observer?.onApiCall?.(operationId, status, Date.now() - started);
}
