// Socket chores every protocol that binds or needs the native addon shares:
// bind and listen failures in words, making room for a Unix socket file, and
// the gate that reports an addon-based protocol unavailable (with the addon's
// reason) where the addon is not built.

import fs from 'node:fs';
import { GatewayError } from '../../core/errors.js';
import { socketsAddon, socketsUnavailable, type SocketsAddon } from '../../native/sockets.js';
import type { ProtocolDef } from '../types.js';

/** Reasons users recognise, for the errno codes a bind or listen usually fails with. */
const BIND_REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available',
};

/**
 * A bind or listen failure as BIND_FAILED: "<what>: <reason>". A GatewayError
 * (a check that already explained itself) passes through unchanged.
 */
export function bindError(err: unknown, what: string): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as NodeJS.ErrnoException;
  const reason = (e.code !== undefined ? BIND_REASONS[e.code] : undefined) ?? e.message;
  return new GatewayError('BIND_FAILED', `${what}: ${reason}`, undefined, { cause: err });
}

/** The protocol as declared, or reported unavailable with the addon's reason. */
export function needsAddon(def: ProtocolDef): ProtocolDef {
  const reason = socketsUnavailable();
  if (reason === undefined) return def;
  const { listener: _l, cluster: _c, ...rest } = def;
  return { ...rest, unavailable: `protocol "${def.name}" is unavailable: ${reason}` };
}

/** The sockets addon, or NOT_SUPPORTED with the reason it did not load (`what` prefixes it). */
export function requireAddon(what?: string): SocketsAddon {
  const a = socketsAddon();
  if (a !== undefined) return a;
  const reason = socketsUnavailable() ?? 'the native sockets addon is not available';
  throw new GatewayError('NOT_SUPPORTED', what === undefined ? reason : `${what}: ${reason}`);
}

/**
 * Make room for a socket file at `path`: a stale socket (nobody bound to it,
 * left by a crashed process) is removed; a live one or any other file is
 * BIND_FAILED. `live` probes the socket the way its type allows.
 */
export async function clearStaleSocket(path: string, what: string, live: (path: string) => boolean | Promise<boolean>): Promise<void> {
  let st: fs.Stats;
  try { st = fs.lstatSync(path); } catch { return; }
  if (!st.isSocket()) throw new GatewayError('BIND_FAILED', `${what}: the path exists and is not a socket`);
  if (await live(path)) throw new GatewayError('BIND_FAILED', `${what}: another process is bound there`);
  fs.unlinkSync(path);
}

/** Remove our socket file on stop, if it is still a socket. */
export function unlinkSocket(path: string): void {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch { /* gone already */ }
}
