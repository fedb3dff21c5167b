// SCTP: the protocol's declaration and spec parsing. One SCTP message is one
// channel message (datagram semantics: boundaries kept, no half-close).
//
// Two transports, chosen by the spec's `encapsulation` field:
//
// - absent (or "none"): kernel SCTP (IPPROTO_SCTP sockets through the sockets
//   addon, kernel.ts). On a kernel without SCTP (no sctp module) the
//   config is rejected with the kernel's reason, "SCTP not supported by this
//   kernel".
// - "udp": SCTP over UDP encapsulation (RFC 6951), entirely in user space, on
//   the `sctp` npm package (RFC 4960 in JavaScript). Needs no kernel support
//   and no privileges, and interoperates with usrsctp (the conformance peer,
//   conformance/sctp_udp_echo.c). package.ts wraps the package, packet.ts
//   and transport.ts stand between it and the UDP socket, channel.ts is one
//   association, udp-listener.ts and udp-cluster.ts the two sides.
//
//   listener: {protocol: SCTP, port: 9000, encapsulation: udp, udp_port: 9899,
//              address: 0.0.0.0, idle_timeout: 120}
//     One UDP socket bound to address:udp_port (udp_port defaults to port).
//     Every remote UDP address:port is one SCTP association and one session,
//     as UDP server-mode listeners make a session per flow. A new association
//     must start with an INIT to SCTP port `port`; anything else from an
//     unknown flow is dropped. The session starts once the association is up.
//   cluster:  {protocol: SCTP, port: 9000, encapsulation: udp, udp_port: 9899}
//     Per session a UDP socket connected to endpoint:udp_port (udp_port
//     defaults to port) and one association to SCTP port `port` over it; the
//     local SCTP port is the socket's (ephemeral) UDP port.
//
// Session end: a SHUTDOWN from the peer ends the session (after the messages
// that came before it), an ABORT ends it with an error, and ending the session
// (DELETE /api/v1/sessions/..., the other side closing) shuts the association
// down, or aborts it on an error. idle_timeout (listener, seconds of no
// messages either way; 0 = never) ends idle associations, as for UDP: the
// JavaScript stack does not notice a peer that vanished without a word.
// Packets with a wrong CRC32c are dropped (RFC 4960 6.8); a packet the stack
// chokes on ends that association's session only. A graceful SHUTDOWN that is
// not complete within 2 s is cut short with an ABORT. An INIT with a new tag
// on a live flow (the peer restarted on the same UDP port) ends the old
// session and starts a new one. Messages are up to 64 KiB; a longer chunk
// (from a byte stream) goes out as several messages. patchAssociation()
// (package.ts) works around two shutdown bugs of the package.

import { GatewayError, invalid } from '../../core/errors.js';
import type { ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';
import { KernelSctpCluster, KernelSctpListener, kernelSctpUnavailable } from './kernel.js';
import { MAX_SCTP_PORT } from './package.js';
import { SctpUdpCluster } from './udp-cluster.js';
import { SctpUdpListener } from './udp-listener.js';

/**
 * Validate `encapsulation`: true for SCTP over UDP, false for kernel SCTP
 * (kernel.ts) where this kernel has it; else throw the kernel's reason.
 */
function wantsUdp(spec: Spec, field: string): boolean {
  const enc = v.optString(spec, 'encapsulation', field);
  if (enc !== undefined && enc.toLowerCase() !== 'udp' && enc.toLowerCase() !== 'none') {
    throw invalid(`${field}.encapsulation`, `must be "udp" (SCTP over UDP, RFC 6951) or "none" (kernel SCTP), got "${enc}"`);
  }
  if (enc !== undefined && enc.toLowerCase() === 'udp') return true;
  const kernel = kernelSctpUnavailable();
  if (kernel !== undefined) {
    throw new GatewayError('NOT_SUPPORTED', `${field}: kernel SCTP is unavailable: ${kernel}; set encapsulation: udp for SCTP over UDP (RFC 6951) in user space`, field);
  }
  if (spec.udp_port !== undefined) throw invalid(`${field}.udp_port`, 'applies to encapsulation: udp only (kernel SCTP runs directly on IP)');
  return false;
}

export const sctpProtocol: ProtocolDef = {
  name: 'SCTP',
  kind: 'datagram',
  summary: 'SCTP messages, one association per session; kernel SCTP or, with encapsulation: udp, SCTP over UDP (RFC 6951) in user space',
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      const udp = wantsUdp(spec, field);
      const port = v.port(spec, 'port', field, true)!;
      if (port === 0 || port > MAX_SCTP_PORT) throw invalid(`${field}.port`, `an SCTP listener needs a fixed port from 1 to ${MAX_SCTP_PORT} (the peers address associations to it)`);
      if (!udp) return new KernelSctpListener(v.host(spec, 'address', field, false) ?? '0.0.0.0', port, ctx);
      const udpPort = v.port(spec, 'udp_port', field, false) ?? port;
      if (udpPort === 0) throw invalid(`${field}.udp_port`, 'must be a fixed port');
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      const idleTimeout = v.optNumber(spec, 'idle_timeout', field, 0, 86400 * 365) ?? 120;
      return new SctpUdpListener({ address, port, udpPort, idleTimeout }, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const udp = wantsUdp(spec, field);
      const port = v.port(spec, 'port', field, true)!;
      if (port === 0 || port > MAX_SCTP_PORT) throw invalid(`${field}.port`, `must be the SCTP port of the endpoints, from 1 to ${MAX_SCTP_PORT}`);
      if (!udp) return new KernelSctpCluster(port, ctx);
      const udpPort = v.port(spec, 'udp_port', field, false) ?? port;
      if (udpPort === 0) throw invalid(`${field}.udp_port`, 'must be the UDP encapsulation port of the endpoints');
      return new SctpUdpCluster({ port, udpPort }, ctx);
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};
