// Bytes and packets each way, as the metrics keep them per listener and per
// cluster (observe/metrics.ts): the totals of ended sessions, and the rows a
// scrape adds the live ones to.

export interface Traffic {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** A scrape's row: traffic, the protocol label, and the live sessions. */
export interface Row extends Traffic {
  protocol: string;
  active: number;
}

export const zero = (): Traffic => ({ rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 });

export function add(to: Traffic, rxB: number, txB: number, rxP: number, txP: number): void {
  to.rxBytes += rxB;
  to.txBytes += txB;
  to.rxPackets += rxP;
  to.txPackets += txP;
}

/** The traffic kept under `name`, made on first use. */
export function entry(m: Map<string, Traffic>, name: string): Traffic {
  let t = m.get(name);
  if (!t) {
    t = zero();
    m.set(name, t);
  }
  return t;
}
