// Node fallback for bench/echo/udp_echo.c, used when no C compiler is around:
// every datagram goes back to its sender. Slower than the C echo (one system
// call per datagram each way), so ws-rate.ts says in its report when it used it.
//
// Usage: node dist/bench/udp-echo.js [PORT [LIFETIME_SECONDS]]; prints "PORT <n>".

import dgram from 'node:dgram';

const port = Number(process.argv[2] ?? 0);
const lifetime = Number(process.argv[3] ?? 600);
setTimeout(() => process.exit(0), lifetime * 1000).unref();

const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
sock.on('error', (err) => { process.stderr.write(`udp-echo: ${err.message}\n`); process.exit(1); });
sock.bind(port, '127.0.0.1', () => {
  process.stdout.write(`PORT ${sock.address().port}\n`);
});
// Keep the process alive past the unref'd lifetime timer.
setInterval(() => {}, 1 << 30);
