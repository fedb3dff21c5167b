// WebSocket: the protocol's declaration and spec parsing. The listener runs
// on uWebSockets.js (listener.ts) or, with engine: ws, on the pure-JS `ws`
// library (ws-engine.ts); the cluster is a `ws` client (cluster.ts), since
// uWebSockets.js has no client. One message is one datagram both ways. Close
// codes travel as session end reasons, and a session ended by a WebSocket
// close passes the code on to the other side (frames.ts). With `spec.tls` the
// uws listener serves wss: (common/tls.ts, as HTTPS does).

import { GatewayError, invalid } from '../../core/errors.js';
import type { ProtocolDef, Spec } from '../types.js';
import { TLS_FILE_KEYS, parseTls } from '../common/tls.js';
import * as v from '../common/validate.js';
import { WsCluster } from './cluster.js';
import type { FrameMode, WsListenerConfig } from './frames.js';
import { WsListener } from './listener.js';
import { WsEngineListener } from './ws-engine.js';

/**
 * A WebSocket listener's default message size. uWebSockets.js holds a partial
 * message where JavaScript cannot see it, so each of its connections reserves
 * its whole max_message_size from admin.limits.message_buffer_bytes when it
 * opens: 1 MiB admits 1024 connections in the default 1 GiB budget (16 MiB
 * admitted 64, which one client could take). A cluster reserves only what an
 * unfinished message holds, so it keeps the larger default.
 */
const DEFAULT_LISTENER_MAX_MESSAGE = 1024 * 1024;
const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

function parseFrameMode(spec: Spec, field: string): FrameMode {
  const m = v.optString(spec, 'frame', field) ?? 'mirror';
  if (m !== 'binary' && m !== 'text' && m !== 'mirror') throw invalid(`${field}.frame`, 'must be binary, text or mirror');
  return m;
}

function subprotocolList(spec: Spec, field: string): string[] | undefined {
  const s = spec.subprotocols;
  if (s === undefined) return undefined;
  if (!Array.isArray(s) || s.some((x) => typeof x !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(x))) {
    throw invalid(`${field}.subprotocols`, 'must be an array of subprotocol tokens');
  }
  return s as string[];
}

export const websocketProtocol: ProtocolDef = {
  name: 'WebSocket',
  aliases: ['WS'],
  kind: 'datagram',
  summary: 'WebSocket messages: listener on uWebSockets.js, cluster on the ws client; one message per datagram',
  files: { listener: TLS_FILE_KEYS },
  listener: {
    modes: ['server'],
    workers: 'every',
    portKind: 'tcp',
    tls: true,
    create(spec, ctx, field) {
      const path = v.optString(spec, 'path', field);
      // uws (default): uWebSockets.js; ws: the pure-JS `ws` library (ws-engine.ts).
      const engine = v.optString(spec, 'engine', field) ?? 'uws';
      if (engine !== 'uws' && engine !== 'ws') throw invalid(`${field}.engine`, `must be "uws" or "ws", got "${engine}"`);
      // Checked for either engine: a tls the listener would ignore must not pass for wss.
      const tls = parseTls(spec, field);
      if (tls !== undefined && engine === 'ws') throw new GatewayError('NOT_SUPPORTED', `${field}.engine: "ws" does not serve TLS (wss) yet; use the uws engine`, `${field}.engine`);
      const cfg: WsListenerConfig = {
        address: v.host(spec, 'address', field, false) ?? '0.0.0.0',
        port: v.port(spec, 'port', field, true)!,
        path: path === undefined || path === '' || path === '/*' ? undefined : path,
        subprotocols: subprotocolList(spec, field),
        maxMessage: v.optNumber(spec, 'max_message_size', field, 1, 1 << 30) ?? DEFAULT_LISTENER_MAX_MESSAGE,
        idleTimeout: v.optNumber(spec, 'idle_timeout', field, 0, 960) ?? 120,
        frame: parseFrameMode(spec, field),
        ...(tls !== undefined ? { tls } : {}),
      };
      return engine === 'ws' ? new WsEngineListener(cfg, ctx) : new WsListener(cfg, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const bind = v.optObject(spec, 'bind', field);
      return new WsCluster({
        port: v.port(spec, 'port', field, true)!,
        path: v.optString(spec, 'path', field),
        bindAddress: bind ? v.host(bind, 'address', `${field}.bind`, false) : undefined,
        maxMessage: v.optNumber(spec, 'max_message_size', field, 1, 1 << 30) ?? DEFAULT_MAX_MESSAGE,
        frame: parseFrameMode(spec, field),
        subprotocols: subprotocolList(spec, field),
      }, ctx);
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};
