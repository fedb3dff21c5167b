// Unix-domain datagram (UNIX/dgram) and sequenced-packet (UNIX/seqpacket)
// sockets, through the native sockets addon: Node.js has neither.
//
// UNIX/dgram listener: one socket bound to `filename`; each sending socket
// (by its address) is a session, answered with sendto() from the listening
// socket, like a UDP server-mode listener without per-flow sockets (a Unix
// path cannot be bound twice). A sender with no address (an unbound socket)
// gets a one-way session: there is nowhere to send replies.
// UNIX/dgram cluster: a socket autobound to an abstract address (so the peer
// can reply) and connected to the endpoint's path, one per session.
// UNIX/seqpacket: connection-oriented with message boundaries: one session
// per connection, listener and cluster, and a zero-length read is EOF.
//
// This file holds the declarations and spec parsing; the listeners are in
// listener.ts, the clusters in cluster.ts.

import type { ProtocolDef, Spec } from '../types.js';
import { needsAddon, requireAddon } from '../common/socket.js';
import * as v from '../common/validate.js';
import { UnixNativeCluster } from './cluster.js';
import { SeqpacketListener, UnixDgramListener } from './listener.js';

export const unixDgramProtocol: ProtocolDef = needsAddon({
  name: 'UNIX/dgram',
  files: { listener: [{ key: 'filename' }], endpoint: [{ key: 'address' }] },
  kind: 'datagram',
  summary: 'Unix-domain datagram sockets; one session per sending socket; the endpoint address is the socket path',
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      const filename = v.path(spec, 'filename', field, true)!;
      const idle = v.optNumber(spec, 'idle_timeout', field, 0, 86400 * 365) ?? 120;
      return new UnixDgramListener(requireAddon(), filename, idle, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create() {
      return new UnixNativeCluster(requireAddon(), false);
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
});

export const unixSeqpacketProtocol: ProtocolDef = needsAddon({
  name: 'UNIX/seqpacket',
  files: { listener: [{ key: 'filename' }], endpoint: [{ key: 'address' }] },
  kind: 'datagram',
  summary: 'Unix-domain sequenced-packet sockets; one session per connection, message boundaries kept',
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      return new SeqpacketListener(requireAddon(), v.path(spec, 'filename', field, true)!, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create() {
      return new UnixNativeCluster(requireAddon(), true);
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
});
