// The session pipeline calls its one hook list at each milestone, in order,
// and the access log is one of those hooks. No sockets: the source is an
// in-process LoopChannel and the routes lead to an Echo transform or to a
// cluster without endpoints (whose connects fail before any socket opens).

import test from 'ava';
import { Gateway } from '../../src/core/gateway.js';
import type { ListenerObj } from '../../src/core/model.js';
import { LoopChannel } from '../../src/dataplane/channel.js';
import type { SessionHooks } from '../../src/dataplane/hooks.js';
import { Pipeline } from '../../src/dataplane/pipeline.js';
import type { Session } from '../../src/dataplane/session.js';
import { silentLogger } from '../../src/observe/log.js';

/** Records every milestone as text; `waitFor(m)` resolves when milestone `m` has been seen. */
class Recorder implements Required<SessionHooks> {
  readonly seen: string[] = [];
  private readonly waiters: Array<{ what: string; resolve: () => void }> = [];

  private note(what: string): void {
    this.seen.push(what);
    for (const w of this.waiters.splice(0)) {
      if (this.seen.includes(w.what)) w.resolve();
      else this.waiters.push(w);
    }
  }

  waitFor(what: string, ms = 5000): Promise<void> {
    if (this.seen.includes(what)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "${what}" within ${ms} ms; saw ${this.seen.join(', ')}`)), ms);
      this.waiters.push({ what, resolve: () => { clearTimeout(t); resolve(); } });
    });
  }

  onSessionStart(s: Session): void { this.note(`start ${s.status}`); }
  onConnectFailure(_s: Session, st: { origin: string }): void { this.note(`connect-failure ${st.origin}`); }
  onRetry(_s: Session, st: { origin: string }, phase: string): void { this.note(`retry ${st.origin} ${phase}`); }
  onStageConnect(_s: Session, st: { origin: string }, reconnect: boolean): void { this.note(`stage-connect ${st.origin} ${reconnect}`); }
  onSessionLinked(s: Session): void { this.note(`linked ${s.status}`); }
  onSessionUnlinking(s: Session): void { this.note(`unlinking ${s.status}`); }
  onSessionEnd(s: Session): void { this.note(`end ${s.status}`); }
}

interface Rig {
  gw: Gateway;
  pipeline: Pipeline;
  recorder: Recorder;
  accessLog: Array<Record<string, unknown>>;
}

/** A gateway holding `config`, a stand-in listener "l" on rulelist "rl", and a pipeline on its hook list. */
async function rig(config: Record<string, unknown>, refusing = false): Promise<Rig> {
  const accessLog: Array<Record<string, unknown>> = [];
  const log = silentLogger();
  const gw = new Gateway({ log, version: 'test', accessLog: (line) => accessLog.push(line) });
  const recorder = new Recorder();
  gw.hooks.add(recorder);
  await gw.applyConfig(config, false);
  gw.listeners.set('l', { kind: 'listener', name: 'l', rules: 'rl', options: { track: 0 } } as unknown as ListenerObj);
  const pipeline = new Pipeline({ graph: gw, log, admission: gw.admission, hooks: gw.hooks, refusing: () => refusing });
  return { gw, pipeline, recorder, accessLog };
}

function open(r: Rig): LoopChannel {
  const [source, peer] = LoopChannel.pair('datagram');
  r.pipeline.open('l', { name: 'S', metadata: {}, channel: source });
  return peer;
}

test('an echoed session: start, stage connect, linked, then unlinking before the end; the access log is one of the hooks', async (t) => {
  const r = await rig({ rulelists: [{ name: 'rl', rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }] });
  const peer = open(r);
  const back: string[] = [];
  peer.setSink({ data: (c) => back.push(Buffer.from(c).toString()), end: () => undefined });
  await r.recorder.waitFor('linked CONNECTED');
  peer.send(Buffer.from('hi'));
  t.deepEqual(back, ['hi']);
  peer.close(); // the client goes: the source stage closes
  await r.recorder.waitFor('end DESTROYED');
  t.deepEqual(r.recorder.seen, [
    'start INIT',
    'stage-connect echo false',
    'linked CONNECTED',
    'unlinking CONNECTED', // the source stage closed
    'unlinking CONNECTED', // the session ends: final counts before anyone reads them
    'end DESTROYED',
  ]);
  t.is(r.accessLog.length, 1);
  t.like(r.accessLog[0], { session: 'S', listener: 'l', destination: 'echo', ingress_bytes: 2, egress_bytes: 2, status: 'ok', reason: 'stage "l" closed' });
  t.is(r.pipeline.sessions.size, 0);
});

test('connect failures with retries: each attempt and retry is a hook call, then the failed session ends once', async (t) => {
  const r = await rig({
    clusters: [{ name: 'empty', spec: { protocol: 'TCP', port: 9 } }],
    rulelists: [{ name: 'rl', rules: [{ action: { route: { destination: 'empty', retry: { retry_on: 'connect-failure', num_retries: 2, timeout: 1 } } } }] }],
  });
  open(r);
  await r.recorder.waitFor('end DESTROYED');
  t.deepEqual(r.recorder.seen, [
    'start INIT',
    'connect-failure empty',
    'retry empty connect',
    'connect-failure empty',
    'retry empty connect',
    'connect-failure empty',
    'unlinking INIT',
    'end DESTROYED',
  ]);
  t.like(r.accessLog[0], { session: 'S', destination: 'empty', status: 'error' });
  t.regex(String(r.accessLog[0]!.reason), /No endpoint in cluster "empty"/);
});

test('a stopping or draining gateway refuses new sessions before any hook runs', async (t) => {
  const r = await rig({ rulelists: [{ name: 'rl', rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }] }, true);
  const peer = open(r);
  t.true(peer.closed);
  t.deepEqual(r.recorder.seen, []);
  t.is(r.pipeline.sessions.size, 0);
  t.is(r.accessLog.length, 0);
});
