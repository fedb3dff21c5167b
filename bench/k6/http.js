// k6 HTTP load for the gateway, for users who have k6 (https://k6.io); the
// runner (npm run bench) does not need it. Closed loop: VUS virtual users,
// each sending the next request when the previous one is answered.
//
//   k6 run -e URL=http://127.0.0.1:8080/ -e VUS=16 -e DURATION=10s bench/k6/http.js
//
// Point URL at an HTTP listener routed to an HTTP echo or static upstream, and
// run the same script against nginx's http proxy on the same upstream for a
// ratio. BODY_SIZE > 0 sends a POST with that many bytes instead of a GET.

import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';

const URL = __ENV.URL || 'http://127.0.0.1:8080/';
const BODY_SIZE = Number(__ENV.BODY_SIZE || 0);
const body = BODY_SIZE > 0 ? 'x'.repeat(BODY_SIZE) : null;

export const options = {
  vus: Number(__ENV.VUS || 16),
  duration: __ENV.DURATION || '10s',
  // Keep-alive connections, as a proxy in front of a service sees them.
  noConnectionReuse: false,
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
  thresholds: {
    // The run fails if more than 0.1 % of requests fail.
    http_req_failed: ['rate<0.001'],
  },
};

const ttfb = new Trend('time_to_first_byte', true);

export default function () {
  const res = body === null
    ? http.get(URL)
    : http.post(URL, body, { headers: { 'content-type': 'application/octet-stream' } });
  check(res, { 'status is 2xx': (r) => r.status >= 200 && r.status < 300 });
  ttfb.add(res.timings.waiting);
}
