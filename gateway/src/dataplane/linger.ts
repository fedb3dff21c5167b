// The EOF linger of connectionless cluster channels (UDP, Unix datagram,
// AF_PACKET, SCTP over UDP). They cannot half-close: after end() they keep
// taking replies and report EOF once none came for `ms`, so that a byte-stream
// client that closed towards them still sees its last answers and then its
// session ends. Created only on end(): an idle channel carries no timer.

export class EofLinger {
  private timer: NodeJS.Timeout | undefined;
  private seen: number;

  /**
   * @param received how many messages the channel has read so far
   * @param done     called once, when `ms` passed without a new one
   */
  constructor(private readonly ms: number, private readonly received: () => number, private readonly done: () => void) {
    this.seen = received();
    this.arm();
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = this.received();
      if (now !== this.seen) {
        this.seen = now;
        this.arm();
      } else {
        this.done();
      }
    }, this.ms);
    this.timer.unref();
  }

  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
