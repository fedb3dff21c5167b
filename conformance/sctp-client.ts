// An SCTP-over-UDP (RFC 6951) client for the SCTP listener, on the `sctp`
// package over a connected dgram socket: one association per client session,
// one SCTP message per send(). Used by the conformance suite and by
// gateway/test/integration/sctp-userspace.test.ts. The listener's UDP and SCTP ports are the
// same unless `sctpPort` says otherwise. The packets pass through the
// gateway's FlowTransport, so that the package throwing on one cannot take
// the suite's process down with it (it ends this session instead).

import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { patchAssociation, type SctpAssociation } from '../gateway/src/protocols/sctp/package.js';
import { FlowTransport } from '../gateway/src/protocols/sctp/transport.js';
import { silentLogger } from '../gateway/src/observe/log.js';
import { clientPort } from './ports.js';
import { Inbox, type ClientSession, type OpenOptions, type Target } from './clients.js';

interface PkgSocket {
  association?: SctpAssociation;
  on(ev: string, fn: (...a: any[]) => void): void;
  once(ev: string, fn: (...a: any[]) => void): void;
  write(b: Uint8Array): boolean;
  end(): void;
  destroy(): void;
}

const SctpSocket = (createRequire(import.meta.url)('sctp') as { Socket: new (o: Record<string, unknown>) => PkgSocket }).Socket;

const CONNECT_MS = 5000;
/** Our receive window: it must hold the largest message whole (the package has no partial delivery). */
const RECEIVE_WINDOW = 256 * 1024;

export interface SctpClientSession extends ClientSession {
  /** The client's UDP (and SCTP) port. */
  readonly localPort: number;
  /** Abort the association instead of shutting it down. */
  abort(): Promise<void>;
  /** Vanish without a word (a crashed peer): close the UDP socket, send nothing. */
  drop(): Promise<void>;
}

async function bindUdp(source: string, port?: number): Promise<dgram.Socket> {
  let last: unknown;
  for (let i = 0; i < (port === undefined ? 64 : 1); i++) {
    const p = port ?? clientPort();
    const s = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind({ port: p, address: source, exclusive: true }, () => { s.off('error', reject); resolve(); });
      });
      return s;
    } catch (err) {
      last = err;
      try { s.close(); } catch { /* not open */ }
    }
  }
  throw new Error(`no free UDP client port after 64 tries: ${(last as Error | undefined)?.message ?? ''}`);
}

export async function sctpUdpClient(t: Target & { sctpPort?: number }, o: Partial<OpenOptions> & { localPort?: number } = {}): Promise<SctpClientSession> {
  const udp = await bindUdp(o.source ?? '127.0.0.1', o.localPort);
  const localPort = udp.address().port;
  await new Promise<void>((resolve) => udp.connect(t.port, t.host, () => resolve()));
  const inbox = new Inbox();
  const sock = new SctpSocket({ readableHighWaterMark: RECEIVE_WINDOW });
  const transport = new FlowTransport((packet, cb) => udp.send(packet, cb), (err) => {
    inbox.close(err);
    try { sock.destroy(); } catch { /* not connected yet: nothing to abort */ }
  }, silentLogger(), `client ${localPort}`);
  udp.on('message', (m) => transport.feed(m));
  // ECONNREFUSED while nobody listens: the package ends the association.
  udp.on('error', (err: NodeJS.ErrnoException) => {
    transport.fail(err);
    if (err.code !== 'ECONNREFUSED') inbox.close(err);
  });
  sock.on('data', (d: Buffer) => inbox.push(d));
  sock.on('error', (err?: Error) => { if (err) inbox.close(err); });
  const gone = new Promise<void>((resolve) => sock.once('end', () => {
    inbox.end();
    inbox.close();
    transport.close();
    try { udp.close(); } catch { /* closed */ }
    resolve();
  }));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`SCTP/UDP association to ${t.host}:${t.port} not up within ${CONNECT_MS} ms`)), o.timeoutMs ?? CONNECT_MS);
      sock.once('connect', () => {
        clearTimeout(timer);
        // The package's SHUTDOWN handling has a gap the gateway closes too (see there).
        if (sock.association) patchAssociation(sock.association);
        resolve();
      });
      sock.once('end', () => { clearTimeout(timer); reject(new Error(`SCTP/UDP association to ${t.host}:${t.port} refused`)); });
      (sock as unknown as { connect(o: Record<string, unknown>): void }).connect({
        port: t.sctpPort ?? t.port,
        localPort,
        udpTransport: transport,
        udpPeer: { address: t.host, port: t.port },
      });
    });
  } catch (err) {
    transport.close();
    try { udp.close(); } catch { /* closed */ }
    throw err;
  }
  const settle = (ms: number): Promise<void> => Promise.race([gone, new Promise<void>((r) => setTimeout(r, ms).unref())]).then(() => {
    transport.close();
    try { udp.close(); } catch { /* closed */ }
    inbox.close();
  });
  return {
    inbox,
    localPort,
    send: (b) => { sock.write(b); },
    // A graceful SHUTDOWN; the peer's SHUTDOWN COMPLETE (or 2 s) ends it.
    close: () => {
      if (inbox.closed) return Promise.resolve();
      sock.end();
      return settle(2000);
    },
    drop: async () => {
      transport.close();
      await new Promise<void>((r) => { try { udp.close(() => r()); } catch { r(); } });
      inbox.close();
    },
    abort: () => {
      if (inbox.closed) return Promise.resolve();
      sock.destroy();
      return settle(0);
    },
  };
}
