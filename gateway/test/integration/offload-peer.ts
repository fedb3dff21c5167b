// A UDP peer for the offload tests, run inside a network namespace
// (ip netns exec NS node dist/gateway/test/integration/offload-peer.js ...). It talks
// to the test over stdin/stdout, one JSON object per line.
//
//   server ADDR PORT   answers every datagram with its bitwise NOT (same
//                      length, so both directions carry distinct, checkable
//                      bytes) and reports {"from": "a:p", "hex": ...}
//   client LADDR LPORT DADDR DPORT
//                      sends {"send": hex} lines from a fixed source port and
//                      reports every datagram it gets as {"hex": ...}
//   clients LADDR LPORT COUNT DADDR DPORT
//                      COUNT such clients on ports LPORT.., one process (many
//                      flows cost one node); lines carry "flow": the index
// Both print {"ready": true} once bound.

import dgram from 'node:dgram';
import readline from 'node:readline';

const [mode, a, b, c, d] = process.argv.slice(2);
const out = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
const sock = dgram.createSocket('udp4');
sock.on('error', (err) => { out({ error: err.message }); process.exit(1); });
// The test ends us by closing stdin (or killing us).
process.stdin.on('end', () => process.exit(0));

if (mode === 'server') {
  sock.on('message', (msg, r) => {
    out({ from: `${r.address}:${r.port}`, hex: msg.toString('hex') });
    const reply = Buffer.allocUnsafe(msg.length);
    for (let i = 0; i < msg.length; i++) reply[i] = ~msg[i]! & 0xff;
    sock.send(reply, r.port, r.address);
  });
  sock.bind(Number(b), a, () => out({ ready: true }));
} else if (mode === 'client') {
  sock.on('message', (msg) => out({ hex: msg.toString('hex') }));
  sock.bind(Number(b), a, () => {
    sock.connect(Number(d), c, () => {
      out({ ready: true });
      readline.createInterface({ input: process.stdin }).on('line', (line) => {
        const m = JSON.parse(line) as { send?: string };
        if (m.send !== undefined) sock.send(Buffer.from(m.send, 'hex'));
      });
    });
  });
} else if (mode === 'clients') {
  const [, , , , , dport] = process.argv.slice(2);
  sock.close();
  const socks = Array.from({ length: Number(c) }, () => dgram.createSocket('udp4'));
  let bound = 0;
  socks.forEach((x, i) => {
    x.on('error', (err) => { out({ error: err.message, flow: i }); process.exit(1); });
    x.on('message', (msg) => out({ hex: msg.toString('hex'), flow: i }));
    x.bind(Number(b) + i, a, () => x.connect(Number(dport), d, () => { if (++bound === socks.length) out({ ready: true }); }));
  });
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const m = JSON.parse(line) as { send?: string; flow?: number };
    if (m.send !== undefined) socks[m.flow ?? 0]?.send(Buffer.from(m.send, 'hex'));
  });
} else {
  process.stderr.write('usage: offload-peer server ADDR PORT | client LADDR LPORT DADDR DPORT | clients LADDR LPORT COUNT DADDR DPORT\n');
  process.exit(2);
}
