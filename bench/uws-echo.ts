// The ceiling for the WebSocket message-rate run: a WebSocket echo server on
// uWebSockets.js with nothing in between (no gateway, no UDP hop). It loads
// uWS through the gateway's own loader, so both use the same build.
//
// Usage: node dist/bench/uws-echo.js PORT [LIFETIME_SECONDS]; prints "PORT <n>".

import { requireUws } from '../gateway/src/protocols/common/uws.js';

const port = Number(process.argv[2] ?? 0);
const lifetime = Number(process.argv[3] ?? 600);
setTimeout(() => process.exit(0), lifetime * 1000).unref();

const uws = requireUws();
const app = uws.App().ws('/*', {
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 0,
  message: (ws, msg, isBinary) => { ws.send(msg, isBinary, false); },
});
app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    process.stderr.write(`uws-echo: cannot listen on 127.0.0.1:${port}\n`);
    process.exit(1);
  }
  process.stdout.write(`PORT ${uws.us_socket_local_port(token)}\n`);
});
