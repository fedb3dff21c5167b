// The one table of protocols. Adding a protocol is one module plus one line
// here; config validation, the REST API and the conformance matrix read it.

import { GatewayError } from '../core/errors.js';
import { controllerProtocol } from './controller/index.js';
import { httpProtocol } from './http/index.js';
import { jsonSocketProtocolOver } from './jsonsocket/index.js';
import { metricProtocol, prometheusProtocol } from './prometheus/index.js';
import { tcpProtocol, unixProtocol } from './stream/index.js';
import {
  discardProtocol, echoProtocol, jsonDecapProtocol, jsonEncapProtocol, loggerProtocol, stdioProtocol,
} from './virtual/index.js';
import { syncProtocol } from './sync/index.js';
import type { ProtocolDef } from './types.js';
import { udpProtocol } from './udp/index.js';
import { pipeProtocol } from './pipe/index.js';
import { afPacketProtocol } from './afpacket/index.js';
import { sctpProtocol } from './sctp/index.js';
import { stdioForkProtocol } from './stdiofork/index.js';
import { unixDgramProtocol, unixSeqpacketProtocol } from './unixdgram/index.js';
import { websocketProtocol } from './websocket/index.js';

export const PROTOCOLS: readonly ProtocolDef[] = [
  udpProtocol,
  tcpProtocol,
  unixProtocol,
  httpProtocol,
  controllerProtocol,
  echoProtocol,
  discardProtocol,
  loggerProtocol,
  jsonEncapProtocol,
  jsonDecapProtocol,
  syncProtocol,
  stdioProtocol,
  websocketProtocol,
  jsonSocketProtocolOver(protocolFor),
  sctpProtocol,
  afPacketProtocol,
  unixDgramProtocol,
  unixSeqpacketProtocol,
  pipeProtocol,
  stdioForkProtocol,
  prometheusProtocol,
  metricProtocol,
];

const byName = new Map<string, ProtocolDef>();
for (const p of PROTOCOLS) {
  byName.set(p.name.toLowerCase(), p);
  for (const a of p.aliases ?? []) byName.set(a.toLowerCase(), p);
}

/** Look a protocol up by name or alias, case-insensitively. */
export function findProtocol(name: string): ProtocolDef | undefined {
  return byName.get(name.toLowerCase());
}

export function protocolNames(): string[] {
  return PROTOCOLS.map((p) => p.name);
}

/** Resolve a spec's protocol for a role, or throw the error the user should see. */
export function protocolFor(name: unknown, role: 'listener' | 'cluster', field: string): ProtocolDef {
  if (typeof name !== 'string' || name === '') {
    throw new GatewayError('INVALID_INPUT', `${field}: is required: one of ${protocolNames().join(', ')}`, field);
  }
  const p = findProtocol(name);
  if (!p) {
    throw new GatewayError('INVALID_INPUT', `${field}: unknown protocol "${name}"; known protocols: ${protocolNames().join(', ')}`, field);
  }
  if (p.unavailable) throw new GatewayError('NOT_SUPPORTED', `${field}: ${p.unavailable}`, field);
  if (role === 'listener' && !p.listener) {
    throw new GatewayError('INVALID_INPUT', `${field}: protocol "${p.name}" cannot be used in a listener (cluster only)`, field);
  }
  if (role === 'cluster' && !p.cluster) {
    throw new GatewayError('NOT_SUPPORTED', `${field}: protocol "${p.name}" cannot be used in a cluster (listener only)`, field);
  }
  return p;
}

/**
 * Test hook: make `def` known to findProtocol() and protocolFor() (and so to
 * config validation and the REST API) until the returned function is called.
 * PROTOCOLS is a constant built at import; this lets a test check a protocol
 * written by CONTRIBUTING.md's recipe (gateway/test/fixtures/protocols/)
 * against a real gateway without shipping it. PROTOCOLS itself, and what is
 * generated from it, stay as they are.
 */
export function registerProtocolForTest(def: ProtocolDef): () => void {
  const keys = [def.name, ...(def.aliases ?? [])].map((n) => n.toLowerCase());
  const taken = keys.filter((k) => byName.has(k));
  if (taken.length > 0) throw new Error(`registerProtocolForTest: ${taken.join(', ')} already names a protocol`);
  for (const k of keys) byName.set(k, def);
  return () => {
    for (const k of keys) if (byName.get(k) === def) byName.delete(k);
  };
}
