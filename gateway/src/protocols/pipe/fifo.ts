// FIFO chores of PIPE: make sure a path is a FIFO (mkfifo through the addon
// when it is missing), open its ends without blocking, and drive an fd as a
// libuv pipe handle.

import fs from 'node:fs';
import net from 'node:net';
import { GatewayError } from '../../core/errors.js';
import { socketsAddon, socketsUnavailable } from '../../native/sockets.js';

export const { O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK } = fs.constants;

/** Make sure `path` is a FIFO, creating it when missing; true when it was created. */
export function ensureFifo(path: string, what: string): boolean {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(path); } catch { st = undefined; }
  if (st !== undefined) {
    if (!st.isFIFO()) throw new GatewayError('BIND_FAILED', `${what}: ${path} exists and is not a FIFO`);
    return false;
  }
  const addon = socketsAddon();
  if (addon === undefined) {
    throw new GatewayError('BIND_FAILED', `${what}: ${path} does not exist and cannot be created (${socketsUnavailable()}); create it with mkfifo`);
  }
  try {
    addon.mkfifo(path, 0o600);
  } catch (err) {
    throw new GatewayError('BIND_FAILED', `${what}: ${(err as Error).message}`, undefined, { cause: err });
  }
  return true;
}

export function isFifo(path: string): boolean {
  try { return fs.statSync(path).isFIFO(); } catch { return false; }
}

/** A FIFO fd as a libuv pipe handle, one direction only. */
export function fifoStream(fd: number, dir: 'read' | 'write'): net.Socket {
  return new net.Socket({ fd, readable: dir === 'read', writable: dir === 'write', allowHalfOpen: true });
}

/**
 * Open the writing end. O_WRONLY|O_NONBLOCK fails with ENXIO while nobody
 * reads; `waitForReader` then opens O_RDWR, which never fails and keeps the
 * bytes in the FIFO until a reader comes (the listener's answers).
 */
export function openWriter(path: string, waitForReader: boolean): number {
  try {
    return fs.openSync(path, O_WRONLY | O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO' && waitForReader) return fs.openSync(path, O_RDWR | O_NONBLOCK);
    throw err;
  }
}
