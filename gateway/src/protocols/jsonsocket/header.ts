// The JSONSocket v1 header codec (l7mp's doc/jsonsocket-spec.org): the
// request header a client sends and the server's check of it, the response
// header the server answers and the client's check of it. The gateway's
// listener and cluster and the jsonsocket-client tool (tools/) use the same
// functions, so all of them agree on what a valid header is.

import { exceedsDepth } from '../../core/depth.js';
import { isObject } from '../common/validate.js';

/** The only protocol version there is. */
export const JSONSOCKET_VERSION = 1;

function utf8(chunk: Uint8Array): string {
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
}

/** `{"JSONSocketVersion":1,"JSONSocketStatus":status,"JSONSocketMessage":message}` as one datagram. */
export function responseHeader(status: number, message: string): Uint8Array {
  return Buffer.from(JSON.stringify({ JSONSocketVersion: JSONSOCKET_VERSION, JSONSocketStatus: status, JSONSocketMessage: message }));
}

export type RequestCheck =
  | { readonly ok: true; readonly header: Record<string, unknown> }
  | { readonly ok: false; readonly status: 400 | 413 | 505; readonly message: string; readonly refused?: 'header_size' | 'header_depth' };

/**
 * The server's check of a request header (l7mp-facts §4.1): not a JSON object
 * or no numeric JSONSocketVersion → 400; a non-integer version → 400; a
 * version below 0 or above 1 → 505. l7mp's message for a missing version was
 * the literal "Bad Request: err"; ours says what is wrong.
 */
export function checkRequestHeader(chunk: Uint8Array, maxBytes = Infinity, maxDepth = Infinity): RequestCheck {
  const bad = (reason: string): RequestCheck => ({ ok: false, status: 400, message: `Bad Request: ${reason}` });
  // Bounded before parsing: the header becomes session metadata, which every
  // session dump and JSONEncap walk; a huge or deep one would
  // make them slow or overflow the stack (GET /api/v1/sessions answering 500).
  if (chunk.byteLength > maxBytes) {
    return { ok: false, status: 413, message: `Payload Too Large: the request header is ${chunk.byteLength} bytes, the limit is ${maxBytes} (admin.limits.jsonsocket_header_bytes)`, refused: 'header_size' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8(chunk));
  } catch (err) {
    return bad(`the request header is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(parsed)) return bad('the request header is not a JSON object');
  if (exceedsDepth(parsed, maxDepth)) {
    return { ok: false, status: 400, message: `Bad Request: the request header is nested deeper than ${maxDepth} levels (admin.limits.jsonsocket_header_depth)`, refused: 'header_depth' };
  }
  const version = parsed.JSONSocketVersion;
  if (typeof version !== 'number' || !Number.isFinite(version)) return bad('the request header lacks a numeric JSONSocketVersion');
  if (!Number.isInteger(version)) return bad(`JSONSocketVersion ${version} is not an integer`);
  if (version < 0 || version > JSONSOCKET_VERSION) {
    return { ok: false, status: 505, message: `Version Not Supported: JSONSocketVersion ${version} (this server speaks version ${JSONSOCKET_VERSION})` };
  }
  return { ok: true, header: parsed };
}

export type ResponseCheck =
  | { readonly ok: true; readonly header: Record<string, unknown>; readonly status: number }
  | { readonly ok: false; readonly code: 'BAD_RESPONSE' | 'REJECTED'; readonly reason: string; readonly status?: number; readonly header?: Record<string, unknown> };

/**
 * Check a response header by the spec's client rules: a JSON object with a
 * numeric JSONSocketStatus in 200..299. Stricter than l7mp, which accepted a
 * missing status. A JSONSocketVersion, when present, must be a supported one.
 */
export function checkResponseHeader(chunk: Uint8Array): ResponseCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8(chunk));
  } catch {
    return { ok: false, code: 'BAD_RESPONSE', reason: 'the response header is not valid JSON' };
  }
  if (!isObject(parsed)) return { ok: false, code: 'BAD_RESPONSE', reason: 'the response header is not a JSON object' };
  const status = parsed.JSONSocketStatus;
  if (typeof status !== 'number' || !Number.isFinite(status)) {
    return { ok: false, code: 'BAD_RESPONSE', reason: 'the response header lacks a numeric JSONSocketStatus', header: parsed };
  }
  const version = parsed.JSONSocketVersion;
  if (version !== undefined && (typeof version !== 'number' || version < 0 || version > JSONSOCKET_VERSION)) {
    return { ok: false, code: 'BAD_RESPONSE', reason: `the response header has an unsupported JSONSocketVersion ${JSON.stringify(version)}`, status, header: parsed };
  }
  if (status < 200 || status > 299) {
    const msg = typeof parsed.JSONSocketMessage === 'string' ? `: ${parsed.JSONSocketMessage}` : '';
    return { ok: false, code: 'REJECTED', reason: `the server answered status ${status}${msg}`, status, header: parsed };
  }
  return { ok: true, header: parsed, status };
}
