// k6 WebSocket message-rate load for the gateway, for users who have k6; the
// runner (npm run bench) uses bench/ws-load.ts instead. Each virtual user
// opens one WebSocket, keeps WINDOW binary messages of SIZE bytes in flight
// (every echo sends the next one) for DURATION seconds, and records the round
// trip of each message from the send time it carries.
//
//   k6 run -e URL=ws://127.0.0.1:8080/bench -e VUS=8 -e WINDOW=16 -e SIZE=64 -e DURATION=10 bench/k6/websocket.js
//
// Point URL at a WebSocket listener routed to an echo (the bench route is
// WebSocket -> UDP cluster -> C UDP echo, see bench/lib/peers.ts). Messages
// per second = ws_msgs_received / the run's duration, in k6's summary.
// k6's own per-message cost is high (a JavaScript VM per user): on a small
// machine it is likely the bottleneck, so compare targets, not absolute rates.

import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/bench';
const WINDOW = Number(__ENV.WINDOW || 16);
const SIZE = Math.max(8, Number(__ENV.SIZE || 64));
const DURATION_S = Number(__ENV.DURATION || 10);

export const options = {
  vus: Number(__ENV.VUS || 8),
  iterations: Number(__ENV.VUS || 8), // one long session per user
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
};

const rtt = new Trend('ws_message_rtt', true);
const echoed = new Counter('ws_messages_echoed');
const wrongSize = new Counter('ws_messages_wrong_size');

/** A SIZE-byte message whose first 8 bytes are the send time (ms, float64). */
function message() {
  const buf = new ArrayBuffer(SIZE);
  new DataView(buf).setFloat64(0, Date.now(), true);
  return buf;
}

export default function () {
  const res = ws.connect(URL, {}, (socket) => {
    let stopping = false;
    socket.on('open', () => {
      for (let i = 0; i < WINDOW; i++) socket.sendBinary(message());
      socket.setTimeout(() => {
        stopping = true;
        socket.close();
      }, DURATION_S * 1000);
    });
    socket.on('binaryMessage', (data) => {
      if (data.byteLength !== SIZE) {
        wrongSize.add(1);
      } else {
        rtt.add(Date.now() - new DataView(data).getFloat64(0, true));
        echoed.add(1);
      }
      if (!stopping) socket.sendBinary(message());
    });
    socket.on('error', (e) => {
      if (!stopping) console.error(`websocket error: ${e.error()}`);
    });
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
}
