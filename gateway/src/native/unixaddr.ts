// Unix socket addresses for the native protocols: sockaddr_un in words, and
// whether a socket file has a live owner.

import type { SocketsAddon } from './sockets.js';

/** A readable name for a raw sockaddr_un: the path, '@name' for abstract ones, '' for an unnamed socket. */
export function unixPathOf(addr: Uint8Array): string {
  if (addr.byteLength <= 2) return '';
  const b = Buffer.from(addr.buffer, addr.byteOffset + 2, addr.byteLength - 2);
  if (b[0] === 0) return `@${b.toString('latin1', 1).replace(/\0+$/, '')}`;
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.byteLength : nul);
}

/** Whether a process is bound to the Unix socket at `path` (of socket type `type`): a connect() that is not refused. */
export function unixSocketLive(addon: SocketsAddon, path: string, type: number): boolean {
  const fd = addon.socket(addon.constants.AF_UNIX, type, 0);
  try {
    addon.connectUnix(fd, path);
    return true;
  } catch (err) {
    // EAGAIN: a live listener with a full backlog; EPROTOTYPE: a live socket of another type.
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EAGAIN' || code === 'EPROTOTYPE';
  } finally {
    addon.close(fd);
  }
}
