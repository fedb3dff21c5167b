// The raw stream path: TCP and Unix stream sessions whose bytes never enter
// JavaScript (native/sockets/src/rawstream.cc, splice.cc).
//
// The stream listeners accept with accept4 in the addon and hand the session
// a RawStreamChannel (protocols/stream/raw-channel.ts) holding just the fd;
// the route is chosen in JavaScript from the metadata (addresses, ports,
// listener), as for any session. If the route needs no user-space bytes
// (dataplane/raw-route.ts), the stream cluster connects in the addon too, and
// once the session is linked this hook pairs the two sockets in one Splice,
// which copies (read/write through one buffer) or, for bulk, splices through
// a pipe, in C, from the first byte. JavaScript hears once, at the end.
// Otherwise the sockets move into net.Socket on first use and the session
// takes the ordinary path (which may still splice a bulk transfer after 256
// KiB, fastpath/splice.ts). A paired session never moves back: nothing of it
// is left in JavaScript to move.
//
// Everything else is the session's usual machinery: counters read the pair's
// counts when asked (SpliceSession.sync), EOF in one direction becomes a
// half-close of the other socket, a reset from one peer resets the other,
// DELETE, drain cuts and shutdown close the pair (with RSTs, as on the
// net.Socket path), and the end goes through stageClosed -> endSession.
// `GET /api/v1/sessions` shows `"path": "raw"`.

import type { Gateway } from '../core/gateway.js';
import { isRawStream } from '../dataplane/capabilities.js';
import type { SessionHooks } from '../dataplane/hooks.js';
import { rawEligible } from '../dataplane/raw-route.js';
import { SPLICE_NEVER, type Session } from '../dataplane/session.js';
import { BareStream, rawAddon } from '../native/rawstream.js';
import { SpliceSession, type SpliceCtor } from './splice.js';

class RawPairer implements SessionHooks {
  constructor(private readonly Splice: SpliceCtor) {}

  onSessionLinked(s: Session): void {
    if (s.splice !== undefined || s.links.length !== 2 || !rawEligible(s)) return;
    const a = s.source.channel;
    const b = s.destination?.channel;
    if (!isRawStream(a) || !isRawStream(b)) return; // an upstream on Node: both take the JavaScript path
    const path = new SpliceSession(s, a, b, 'raw');
    try {
      // Owned: the Splice closes both sockets from here on, even if it throws.
      path.handle = new this.Splice(spliceArg(a.rawHandle()), spliceArg(b.rawHandle()), (code, side) => path.done(code, side), true);
    } catch (err) {
      // Cannot happen with two open RawStreams; if it does, end the session
      // with the error (closing what the Splice did not take), never hang.
      a.close(err as Error);
      b.close();
      return;
    }
    a.rawAttach(path);
    b.rawAttach(path);
    s.splice = path;
    s.spliceAt = SPLICE_NEVER;
    path.handle.start();
  }
}

/** What a Splice takes for a raw socket: a bare stream's fd (the stream is empty afterwards), or the addon's RawStream. */
function spliceArg(h: unknown): unknown {
  return h instanceof BareStream ? h.take() : h;
}

/** Register the raw stream path on the gateway's session hooks, when this process has it. */
export function setupRawPath(gw: Gateway): void {
  const Splice = (rawAddon() as unknown as { Splice?: SpliceCtor } | undefined)?.Splice;
  if (typeof Splice === 'function') gw.hooks.add(new RawPairer(Splice));
}
