// JSONSocket v1 (l7mp's doc/jsonsocket-spec.org): a JSON header handshake in
// front of a datagram transport, so that plain datagram flows carry
// per-stream metadata the way an HTTP upgrade does for WebSocket.
//
// Both sides compose a transport protocol from the registry instead of
// re-implementing one:
//
// - The listener (listener.ts) builds the transport's listener with a private
//   ListenerContext. Each raw transport session gets the server handshake on
//   its own channel: the first datagram must be a JSON object with a numeric
//   JSONSocketVersion (400 otherwise, 505 for a version we do not speak). A
//   valid header becomes the session's `JSONSocket` metadata and the session
//   goes to the router on the same channel. The 200 answer is sent only when
//   routing succeeded (SessionPriv.connected); a failed route answers with the
//   error status (SessionPriv.error). Bad input ends that flow only.
// - The cluster (cluster.ts) builds the transport's cluster, connects it, sends the request
//   header made from the `header` recipe and hands the channel to the session
//   once a 2xx response arrived.
//
// Only datagram transports that reach a peer qualify: the handshake is one
// message each way, which a byte stream cannot delimit, and a virtual cluster
// (Echo...) is no peer. Any registered protocol of that kind does (UDP,
// UNIX/dgram, WebSocket, ...).
//
// The transports are looked up through a ProtocolLookup the registry passes
// in (jsonSocketProtocolOver), so this module does not import the registry
// that lists it.

import { invalid } from '../../core/errors.js';
import type { ProtocolDef, ProtocolLookup, Spec } from '../types.js';
import { refuseUnservedTls } from '../common/tls.js';
import * as v from '../common/validate.js';
import { JsonSocketCluster, compileHeaderRecipe } from './cluster.js';
import { JsonSocketListener, type Transport } from './listener.js';

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

const NAME = 'JSONSocket';

type Role = 'listener' | 'cluster';

/** Whether a protocol can carry JSONSocket in a role; the reason when not. */
function transportProblem(p: ProtocolDef, role: Role): string | undefined {
  if (p.name === NAME) return 'JSONSocket cannot be its own transport';
  if (p.kind !== 'datagram') {
    return `protocol "${p.name}" is a byte stream; JSONSocket needs a datagram transport that keeps the header a message of its own (e.g. UDP)`;
  }
  // A static-only transport (AF_PACKET) is refused over REST by the gateway (checkStaticOnly follows nestedSpecs).
  if (role === 'cluster' && (p.cluster!.virtual || p.transform)) {
    return `protocol "${p.name}" is an in-process cluster, not a transport; use one that reaches a peer (e.g. UDP)`;
  }
  return undefined;
}

/** Read `transport` (alias `transport_spec`) and resolve its protocol for a role. */
function readTransport(lookup: ProtocolLookup, spec: Spec, field: string, role: Role): Transport {
  const key = spec.transport !== undefined || spec.transport_spec === undefined ? 'transport' : 'transport_spec';
  const raw = spec[key];
  const tf = `${field}.${key}`;
  if (!v.isObject(raw)) {
    throw invalid(tf, `is required: the ${role} spec of the datagram transport JSONSocket runs over, e.g. {protocol: UDP, port: 9000}`);
  }
  const protocol = lookup(raw.protocol, role, `${tf}.protocol`);
  const problem = transportProblem(protocol, role);
  if (problem) throw invalid(`${tf}.protocol`, problem);
  refuseUnservedTls(protocol, raw, tf, role);
  return { protocol, spec: structuredClone(raw) as Spec, field: tf };
}

/** JSONSocket over the transports `lookup` resolves (the registry's protocolFor). */
export function jsonSocketProtocolOver(lookup: ProtocolLookup): ProtocolDef {
  return {
    name: NAME,
    nestedSpecs: ['transport', 'transport_spec'],
    kind: 'datagram',
    summary: 'JSON header handshake over a datagram transport (UDP); the header becomes session metadata under /JSONSocket',
    listener: {
      // The transport's mode: a UDP transport with both connect fields serves one known peer.
      modes: ['singleton', 'server'],
      create(spec, ctx, field) {
        const transport = readTransport(lookup, spec, field, 'listener');
        const timeout = v.optNumber(spec, 'handshake_timeout', field, 1, 3_600_000) ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
        return new JsonSocketListener(transport, timeout, ctx);
      },
    },
    cluster: {
      virtual: false,
      retriable: true,
      create(spec, ctx, field) {
        const transport = readTransport(lookup, spec, field, 'cluster');
        const recipe = compileHeaderRecipe(spec.header, `${field}.header`);
        const inner = transport.protocol.cluster!.create(transport.spec, {
          clusterName: `${ctx.clusterName}-transport-cluster`,
          log: ctx.log,
          refusals: ctx.refusals,
          limits: ctx.limits,
          services: ctx.services,
        }, transport.field);
        return new JsonSocketCluster(inner, recipe, ctx);
      },
      // An endpoint is an address of the cluster's transport: its check decides.
      checkEndpoint(spec, field, clusterSpec) {
        const transport = readTransport(lookup, clusterSpec, 'cluster.spec', 'cluster');
        transport.protocol.cluster!.checkEndpoint?.(spec, field, transport.spec);
      },
    },
  };
}
