// Clients for the listeners that need the native sockets addon (Unix datagram
// and seqpacket) and for FIFOs. They run in the suite's process, like the
// other clients, and use the same addon as the gateway: Node has no Unix
// datagram sockets of its own.

import fs from 'node:fs';
import net from 'node:net';
import { NativeSocket } from '../gateway/src/native/fdsocket.js';
import { socketsAddon, socketsUnavailable, type SocketsAddon } from '../gateway/src/native/sockets.js';
import { Inbox, type ClientSession, type OpenOptions, type Target } from './clients.js';

function addon(): SocketsAddon {
  const a = socketsAddon();
  if (a === undefined) throw new Error(socketsUnavailable() ?? 'the native sockets addon is not available');
  return a;
}

/** A Unix datagram (or seqpacket) client connected to the listener's path. */
function nativeUnixClient(t: Target, seqpacket: boolean): ClientSession {
  if (t.path === undefined) throw new Error('a Unix client needs a path');
  const a = addon();
  const fd = a.socket(a.constants.AF_UNIX, seqpacket ? a.constants.SOCK_SEQPACKET : a.constants.SOCK_DGRAM, 0);
  try {
    if (!seqpacket) a.bindUnix(fd, ''); // an abstract address, so the listener can answer
    a.connectUnix(fd, t.path);
  } catch (err) {
    a.close(fd);
    throw err;
  }
  const inbox = new Inbox();
  const sock: NativeSocket = new NativeSocket(a, fd, 'data', {
    message(m) {
      if (seqpacket && m.byteLength === 0) {
        sock.readStop();
        inbox.end();
        return;
      }
      inbox.push(m);
    },
    error: (code) => inbox.close(new Error(code)),
  });
  sock.readStart();
  return {
    inbox,
    send: (b) => { sock.send(b); },
    ...(seqpacket ? {
      end: () => {
        sock.flush();
        try { a.shutdown(sock.fd, 1); } catch { /* closed */ }
      },
    } : {}),
    close: async () => {
      sock.flush();
      sock.close();
      inbox.close();
    },
  };
}

export async function unixDgramClient(t: Target, _o: OpenOptions): Promise<ClientSession> {
  return nativeUnixClient(t, false);
}

export async function unixSeqpacketClient(t: Target, _o: OpenOptions): Promise<ClientSession> {
  return nativeUnixClient(t, true);
}

/**
 * A PIPE listener client: writes into the listener's FIFO (`path`) and reads
 * the answers from `path + ".reply"`. The reply FIFO is opened read-write so
 * that opening it never blocks; the client therefore never sees EOF there.
 */
export async function pipeClient(t: Target, _o: OpenOptions): Promise<ClientSession> {
  if (t.path === undefined) throw new Error('a PIPE client needs a path');
  const { O_RDWR, O_WRONLY, O_NONBLOCK } = fs.constants;
  const rx = new net.Socket({ fd: fs.openSync(`${t.path}.reply`, O_RDWR | O_NONBLOCK), readable: true, writable: false });
  const tx = new net.Socket({ fd: fs.openSync(t.path, O_WRONLY | O_NONBLOCK), readable: false, writable: true });
  const inbox = new Inbox();
  rx.on('data', (d: Buffer) => inbox.push(d));
  rx.on('error', (err) => inbox.close(err));
  tx.on('error', (err) => inbox.close(err));
  return {
    inbox,
    send: (b) => { tx.write(b); },
    close: async () => {
      await new Promise<void>((r) => tx.end(() => r()));
      tx.destroy();
      rx.destroy();
      inbox.close();
    },
  };
}
