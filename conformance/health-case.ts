// The health case (a heavy case, on representative pairs): a cluster of a
// dead endpoint, listed FIRST, and a live one (the pair's echo upstream), with
// an active health check and outlier detection. The load balancer is Trivial,
// which takes the first usable endpoint: without health every session would
// go to the dead one, so the case fails unless the gateway found it out.
// Deterministic: it waits for the REST API to show the dead endpoint
// unhealthy or ejected (bounded), then N sessions in a row must all echo.

import type { HeavyContext, HeavyDef, HeavyPart } from './cases.js';
import type { Driver } from './driver.js';
import type { RunCell } from './matrix.js';
import { apiOk, uid, waitFor } from './util.js';

const CLUSTER = 'health-cluster';
const DEAD = 'health-dead';
const LIVE = 'health-live';
/** Sessions in a row that must all reach the live endpoint. */
const SESSIONS = 10;
const REPLY_MS = 5_000;
/** HTTP→UDP and the like: the response ends after the UDP cluster's EOF linger (2 s). */
const REQUEST_MS = 12_000;
/** How long the checks get to tell the endpoints apart (many intervals). */
const FOUND_OUT_MS = 10_000;

/** The case, or its skip: `single` is the listener's reason it has no new sessions. */
export function healthDef(cell: RunCell, driver: Driver, single: string | undefined): HeavyDef {
  const name = 'health';
  if (single !== undefined) return { name, skip: single, tagged: false };
  // An active check probes on a session of its own: on a one-channel upstream it would take the channel over.
  const oneChannel = cell.cluster.oneSessionAtATime;
  if (oneChannel !== undefined) return { name, skip: `${oneChannel}; an active health check's probes would take it over from the cases' sessions`, tagged: false };
  const deadAddress = cell.cluster.deadAddress;
  if (deadAddress === undefined) {
    return { name, skip: `no dead ${cell.clusterProtocol.name} endpoint to put next to a live one (see ClusterPeer.deadAddress)`, tagged: false };
  }
  const connectionless = cell.clusterProtocol.cluster?.connectionless === true;
  return {
    name,
    tagged: false,
    config: (listener, ups): HeavyPart => ({
      listener: { ...listener, rules: [{ action: { route: { destination: CLUSTER } } }] },
      clusters: [{
        name: CLUSTER,
        spec: ups.spec,
        endpoints: [
          { name: DEAD, spec: { address: deadAddress(driver) } },
          { name: LIVE, spec: { address: ups.endpoints[0]!.address } },
        ],
        loadbalancer: { policy: 'Trivial' },
        outlier_detection: { consecutive_failures: 1, base_ejection_time: 60_000 },
        health_check: {
          interval: 300,
          timeout: 250,
          unhealthy_threshold: 1,
          healthy_threshold: 1,
          // A UDP "connect" reaches nobody: the echo peer must answer a datagram.
          ...(connectionless ? { send: 'ping' } : {}),
        },
      }],
    }),
    run: healthCase,
  };
}

interface EndpointHealth {
  readonly health: string;
  readonly reason: string;
}

async function endpointHealth(h: HeavyContext): Promise<Record<string, EndpointHealth>> {
  const c = await apiOk(h.gw.apiBase, 'GET', `/api/v1/clusters/${CLUSTER}?recursive=true`);
  if (!Array.isArray(c?.endpoints)) throw new Error(`GET /api/v1/clusters/${CLUSTER}?recursive=true shows no endpoint list`);
  const out: Record<string, EndpointHealth> = {};
  for (const e of c.endpoints as { name?: string; status?: { health?: string; reason?: string } }[]) {
    out[String(e.name)] = { health: String(e.status?.health), reason: String(e.status?.reason ?? '') };
  }
  return out;
}

const fmt = (s: Record<string, EndpointHealth>): string =>
  [DEAD, LIVE].map((n) => `${n} ${s[n]?.health ?? 'missing'}${s[n]?.reason ? ` (${s[n]!.reason})` : ''}`).join(', ');

async function healthCase(h: HeavyContext): Promise<string> {
  const t0 = Date.now();
  let last: Record<string, EndpointHealth> = {};
  const found = (s: Record<string, EndpointHealth>): boolean =>
    ['unhealthy', 'ejected'].includes(s[DEAD]?.health ?? '') && ['healthy', 'unknown'].includes(s[LIVE]?.health ?? '');
  await waitFor(async () => found(last = await endpointHealth(h)), FOUND_OUT_MS, 'the dead endpoint to be found out')
    .catch((err: Error) => { throw new Error(`${err.message}: ${fmt(last)}`); });
  const foundMs = Date.now() - t0;

  for (let i = 0; i < SESSIONS; i++) {
    const msg = Buffer.from(`health-${i}-${uid('m')};`);
    const l = h.cell.listener;
    if (l.mode === 'request') {
      const r = await l.request(h.target, msg, { id: uid('r'), timeoutMs: REQUEST_MS });
      if (r.status !== 200 || !r.body.equals(msg)) {
        throw new Error(`request ${i + 1} of ${SESSIONS} after the dead endpoint was found out: HTTP ${r.status} ${JSON.stringify(r.body.toString('latin1', 0, 80))}`);
      }
      continue;
    }
    const s = await l.open(h.target, { id: uid('s') });
    try {
      s.send(msg);
      await s.inbox.until(() => s.inbox.bytes >= msg.length, REPLY_MS, `the echo of session ${i + 1} of ${SESSIONS} after the dead endpoint was found out`);
      const got = s.inbox.concat();
      if (!got.equals(msg)) throw new Error(`session ${i + 1} of ${SESSIONS} got ${JSON.stringify(got.toString('latin1', 0, 80))}`);
      await h.path?.whileLive();
    } finally {
      await s.close().catch(() => undefined);
    }
  }
  const after = await endpointHealth(h);
  if (!found(after)) throw new Error(`after ${SESSIONS} sessions: ${fmt(after)}`);
  return `found out in ${foundMs} ms (${fmt(after)}); then ${SESSIONS} new sessions in a row all echoed`;
}
