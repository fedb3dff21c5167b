// A tiny authoritative DNS server over UDP on loopback, for tests: A records
// from a table the test changes at will, no AAAA records, SERVFAIL when told
// to fail. Enough of RFC 1035 for node's c-ares resolver and nothing more.

import dgram from 'node:dgram';

export interface TestDns {
  readonly port: number;
  /** name -> IPv4 addresses; a missing name answers NXDOMAIN. */
  readonly records: Map<string, string[]>;
  ttl: number;
  /** Answer every query with SERVFAIL. */
  failing: boolean;
  queries: number;
  close(): Promise<void>;
}

function questionEnd(msg: Buffer): { name: string; end: number } | undefined {
  const labels: string[] = [];
  let i = 12;
  while (i < msg.length) {
    const n = msg[i]!;
    if (n === 0) return { name: labels.join('.').toLowerCase(), end: i + 5 };
    if (n > 63) return undefined;
    labels.push(msg.subarray(i + 1, i + 1 + n).toString('latin1'));
    i += 1 + n;
  }
  return undefined;
}

export function startTestDns(): Promise<TestDns> {
  const sock = dgram.createSocket('udp4');
  const state: TestDns = {
    port: 0, records: new Map(), ttl: 1, failing: false, queries: 0,
    close: () => new Promise((r) => sock.close(() => r())),
  };
  sock.on('message', (msg, from) => {
    if (msg.length < 17) return;
    const q = questionEnd(msg);
    if (!q) return;
    state.queries++;
    const qtype = msg.readUInt16BE(q.end - 4);
    const addrs = state.records.get(q.name.replace(/\.$/, ''));
    const rcode = state.failing ? 2 : addrs === undefined ? 3 : 0;
    const answers = rcode === 0 && qtype === 1 ? addrs! : [];
    const head = Buffer.alloc(12);
    msg.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8400 | (msg.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2); // QR AA (RD copied) RA
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(answers.length, 6);
    const rrs = answers.map((a) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(state.ttl, 6);
      rr.writeUInt16BE(4, 10);
      a.split('.').forEach((o, k) => rr.writeUInt8(Number(o), 12 + k));
      return rr;
    });
    sock.send(Buffer.concat([head, msg.subarray(12, q.end), ...rrs]), from.port, from.address);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      (state as { port: number }).port = sock.address().port;
      resolve(state);
    });
  });
}
