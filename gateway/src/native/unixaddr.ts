// Unix socket addresses and socket files for the native protocols.

import fs from 'node:fs';
import { GatewayError } from '../core/errors.js';
import type { SocketsAddon } from './sockets.js';

/** A readable name for a raw sockaddr_un: the path, '@name' for abstract ones, '' for an unnamed socket. */
export function unixPathOf(addr: Uint8Array): string {
  if (addr.byteLength <= 2) return '';
  const b = Buffer.from(addr.buffer, addr.byteOffset + 2, addr.byteLength - 2);
  if (b[0] === 0) return `@${b.toString('latin1', 1).replace(/\0+$/, '')}`;
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.byteLength : nul);
}

/**
 * Make room for a socket file at `path`: a stale socket (nobody bound to it,
 * left by a crashed process) is removed; a live one or any other file is an
 * error. `type` is the socket type to probe with.
 */
export function clearStaleSocket(addon: SocketsAddon, path: string, type: number, what: string): void {
  let st: fs.Stats | undefined;
  try { st = fs.lstatSync(path); } catch { return; }
  if (!st.isSocket()) throw new GatewayError('BIND_FAILED', `${what}: the path exists and is not a socket`);
  const fd = addon.socket(addon.constants.AF_UNIX, type, 0);
  let live = true;
  try {
    addon.connectUnix(fd, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    live = code !== 'ECONNREFUSED';
    if (live && code !== 'EAGAIN' && code !== 'EPROTOTYPE') live = false;
  } finally {
    addon.close(fd);
  }
  if (live) throw new GatewayError('BIND_FAILED', `${what}: another process is bound there`);
  fs.unlinkSync(path);
}

/** Remove our socket file on stop, if it is still a socket. */
export function unlinkSocket(path: string): void {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch { /* gone already */ }
}
