// The UDP echo peer of both modes: a small node program with one socket. Each
// datagram goes back as one datagram to its sender; with a tag, the tag goes
// first as a datagram of its own on every new flow (a flow is new again after
// IDLE_MS of silence).
//
// Not socat's UDP-LISTEN,fork, which earlier runs used: its parent hands its
// bound socket to a child per flow and binds a new one, so a datagram that
// arrives meanwhile is lost (ICMP port unreachable, which ends the gateway's
// session for that flow) or queued in the child's socket and echoed to the
// wrong flow. Measured here through a gateway, 4 new flows at a time: 30/40
// answered with socat as a process, 18/40 in a container; in full suite runs
// about one case in a thousand failed for that reason alone (HTTP→UDP
// byte-order answered another request's datagram; a JSONSocket→UDP probe's
// flow ended by the ICMP error). Its -T children also outlive flows the
// gateway has ended. L7MP_UDP_PEER=socat restores socat, to compare.

export type UdpEchoPeer = 'node' | 'socat';

export function udpEchoPeer(): UdpEchoPeer {
  const v = process.env.L7MP_UDP_PEER ?? process.env.L7MP_CONTAINER_UDP_PEER;
  return v === 'socat' ? 'socat' : 'node';
}

/** `node -e UDP_ECHO HOST PORT [TAG]`; prints "ready" once bound. */
export const UDP_ECHO = `
const dgram = require('node:dgram');
const [host, port, tag] = process.argv.slice(1);
const IDLE_MS = 3000; // as socat -T 3: a flow silent this long is new again
const flows = new Map();
const s = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 1 << 21, sendBufferSize: 1 << 21 });
s.on('message', (m, r) => {
  const key = r.address + ':' + r.port;
  const now = Date.now();
  const last = flows.get(key);
  if (tag && (last === undefined || now - last > IDLE_MS)) s.send(Buffer.from(tag), r.port, r.address);
  flows.set(key, now);
  s.send(m, r.port, r.address);
});
s.on('error', (e) => { console.error('udp-echo: ' + e.message); process.exit(1); });
setInterval(() => { const now = Date.now(); for (const [k, t] of flows) if (now - t > IDLE_MS) flows.delete(k); }, IDLE_MS).unref();
s.bind(Number(port), host, () => console.log('ready'));
`;
