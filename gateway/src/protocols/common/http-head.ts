// What a request's head is to the listeners that serve HTTP (HTTP on either
// engine, WebSocket on either engine): read from uWebSockets.js or node:http
// into one shape, the path normalised (a path that cannot be is refused with
// 400 before any session), and turned into the session's HTTP metadata.

import type { IncomingMessage } from 'node:http';
import type * as U from '@trufflesuite/uws-js-unofficial';
import { normalizePath } from '../../routing/httppath.js';
import type { ListenerContext } from '../types.js';
import { text } from './uws.js';

export interface RequestHead {
  method: string;
  url: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  remoteAddress: string;
  /** Set when the path cannot be normalised (routing/httppath.ts): the request gets 400 and no session. */
  pathError?: string;
}

/** The request path normalised (routing/httppath.ts), or the raw one with the reason it is refused. */
export function normalizedPath(raw: string): { path: string; pathError?: string } {
  const n = normalizePath(raw);
  return n.ok ? { path: n.path } : { path: raw, pathError: n.reason };
}

/** Read what uWS lets us read of a request: only synchronously, in the handler. */
export function readHead(res: U.HttpResponse, req: U.HttpRequest): RequestHead {
  const headers: Record<string, string> = {};
  req.forEach((k, val) => { headers[k] = headers[k] === undefined ? val : `${headers[k]}, ${val}`; });
  const { path, pathError } = normalizedPath(req.getUrl());
  const query = req.getQuery() ?? '';
  return {
    method: req.getCaseSensitiveMethod().toUpperCase(),
    url: query ? `${path}?${query}` : path,
    path,
    query,
    headers,
    remoteAddress: text(res.getRemoteAddressAsText()),
    ...(pathError !== undefined ? { pathError } : {}),
  };
}

/** A node:http request's head in the shape the uWS listeners read it (lower-case names, repeats joined): the node engines of HTTP and WebSocket. */
export function readNodeHead(req: IncomingMessage): RequestHead {
  const headers: Record<string, string> = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const val = raw[i + 1]!;
    headers[k] = headers[k] === undefined ? val : `${headers[k]}, ${val}`;
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const { path, pathError } = normalizedPath(q < 0 ? url : url.slice(0, q));
  const query = q < 0 ? '' : url.slice(q + 1);
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    url: query ? `${path}?${query}` : path,
    path,
    query,
    headers,
    remoteAddress: req.socket.remoteAddress ?? '',
    ...(pathError !== undefined ? { pathError } : {}),
  };
}

/** Count and log (once per interval) a request refused for its path; the caller answers 400. */
export function refusePath(ctx: ListenerContext, head: RequestHead): string {
  ctx.refusals.refuse('http_path', ctx.listenerName, { remote: head.remoteAddress, path: head.path.slice(0, 200), why: head.pathError });
  return `Bad Request: ${head.pathError}\n`;
}

export function httpMetadata(head: RequestHead, localAddress: string, localPort: number, scheme: 'http' | 'https' = 'http'): Record<string, unknown> {
  const hostHeader = head.headers.host ?? `${localAddress}:${localPort}`;
  const colon = hostHeader.lastIndexOf(':');
  const host = colon > 0 && !hostHeader.endsWith(']') ? hostHeader.slice(0, colon) : hostHeader;
  const port = colon > 0 && !hostHeader.endsWith(']') ? Number(hostHeader.slice(colon + 1)) : localPort;
  return {
    IP: { src_addr: head.remoteAddress, dst_addr: localAddress },
    TCP: { dst_port: localPort },
    HTTP: {
      version: '1.1',
      method: head.method,
      url: {
        url: head.url,
        href: `${scheme}://${hostHeader}${head.url}`,
        protocol: `${scheme}:`,
        host,
        port,
        path: head.path,
        query: head.query,
      },
      headers: { ...head.headers },
    },
  };
}
