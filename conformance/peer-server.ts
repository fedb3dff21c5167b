// Echo peers for the protocols socat does not speak, run as their own
// processes by the process driver:
//
//   node dist/conformance/peer-server.js http-echo --address A --port P [--tag T]
//       node's http server; every response is 200 with the request body
//       streamed back (after the tag, when given)
//   node dist/conformance/peer-server.js ws-echo --address A --port P [--tag T]
//       the `ws` library's server; each message back with its frame type
//       (the tag first, as a message of its own, on every new connection)
//
// Prints "ready" on stdout once it listens.

import http from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      address: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      tag: { type: 'string' },
    },
  });
  const kind = positionals[0];
  const port = Number(values.port);
  const host = values.address!;
  const tag = values.tag;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write('peer-server: --port is required\n');
    process.exit(2);
  }
  const ready = () => process.stdout.write('ready\n');
  if (kind === 'http-echo') {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-echo-peer': tag ?? 'echo' });
      if (tag !== undefined) res.write(tag);
      req.on('error', () => res.destroy());
      req.pipe(res);
    });
    server.keepAliveTimeout = 5000;
    server.on('clientError', (_err, sock) => sock.destroy());
    server.listen(port, host, ready);
    return;
  }
  if (kind === 'ws-echo') {
    const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    wss.on('connection', (ws) => {
      if (tag !== undefined) ws.send(Buffer.from(tag), { binary: true });
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
      ws.on('error', () => ws.terminate());
    });
    wss.on('listening', ready);
    wss.on('error', (err) => {
      process.stderr.write(`peer-server: ${err.message}\n`);
      process.exit(1);
    });
    return;
  }
  process.stderr.write(`peer-server: unknown kind "${String(kind)}"; http-echo or ws-echo\n`);
  process.exit(2);
}

main();
