// Accepting stream connections with the addon's Forwarder (compiled
// listeners, gateway/src/fastpath/compiled.ts): the addon accepts, and where
// the listener's route is compiled it connects and pairs the connection
// itself; every other connection comes back here with its socket and takes
// the ordinary raw path (onHandoff), as with RawAcceptor. A connection over
// its source's flow rate is refused here, counted and logged as admission
// refuses one; an accept that fails pauses accepting (accept-retry.ts).

import { AcceptRetry } from '../../native/accept-retry.js';
import type { RawAddon } from '../../native/rawstream.js';
import type { ForwarderHandle, SocketsAddon } from '../../native/sockets.js';
import type { CompiledSite, FailedAttempt, ListenerContext, PairNaming } from '../types.js';

export type HandoffFn = (fd: number, peerAddress: string | undefined, peerPort: number | undefined, failed: FailedAttempt | undefined) => void;

/** The addon's Forwarder class, when this build has it. */
export function forwarderOf(addon: RawAddon): NonNullable<SocketsAddon['Forwarder']> | undefined {
  return typeof addon.Forwarder === 'function' ? addon.Forwarder : undefined;
}

export class ForwardAcceptor {
  private readonly f: ForwarderHandle;
  private readonly retry: AcceptRetry;
  private readonly site: CompiledSite;

  /** Takes over fd (listening). */
  constructor(addon: RawAddon, fd: number, private readonly ctx: ListenerContext, naming: PairNaming, onHandoff: HandoffFn, what: string) {
    const Forwarder = forwarderOf(addon)!;
    const site = ctx.compiled!;
    this.site = site;
    const name = ctx.listenerName;
    const options = site.options(name, 2000);
    this.retry = new AcceptRetry(ctx.log, name, what, () => this.f.start());
    this.f = new Forwarder(fd, (cfd, address, port, code, target, generation) => {
      if (cfd < 0) {
        this.retry.failure(code ?? 'EIO');
        return;
      }
      if (code === 'flow_rate') {
        ctx.refusals.refuse('flow_rate', name, { source: address, flow_rate: options.flowRate });
        addon.closeStream(cfd);
        return;
      }
      // A connect the addon made and that failed is the session's first attempt.
      const failed = code === undefined || target < 0 ? undefined : site.failedAttempt(name, generation, target, code);
      onHandoff(cfd, address, port, failed);
    }, () => site.ended(name), options);
    this.f.start();
    site.attach(name, this.f, naming);
  }

  /** Drain: no new connections; the compiled ones go on. */
  stopAccepting(): void {
    this.retry.cancel();
    this.f.stopAccepting();
  }

  /** The listener is gone: its compiled sessions stay until they end, or are cut (compiled.ts). */
  close(): void {
    this.retry.cancel();
    this.site.detach(this.ctx.listenerName, this.f);
  }
}
