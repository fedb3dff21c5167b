// A session's event log as the REST dump shows it: the three events every
// routed session has are kept as numbers (dataplane/session.ts) and must
// come out as before, in order, with the rest after them and the bound of
// 64 events dropping the oldest after INIT first.

import test from 'ava';
import { Session, Stage, type SessionOwner } from '../../src/dataplane/session.js';
import { ProbeChannel } from './probe-channel.js';

const owner: SessionOwner = { stageClosed: () => {}, stageEnded: () => {} };

function session(): Session {
  return new Session('s1', 'listener', {}, new ProbeChannel('byte', 'client'), {}, owner);
}

const names = (s: Session): string[] => s.events.map((e) => e.event);

test('events: INIT, LOOKUP SUCCESS and CONNECT first, then the others in the order they came, with ISO timestamps from the start on', (t) => {
  const s = session();
  t.deepEqual(s.events, [{ event: 'INIT', timestamp: new Date(s.started).toISOString(), message: 'Session created' }]);
  s.lookedUp('Route "r" selected');
  s.connectedAll();
  s.event('DISCONNECT', 'cluster "c" disconnected', 'ECONNRESET');
  s.event('END', 'stage "c" closed');
  t.deepEqual(names(s), ['INIT', 'LOOKUP SUCCESS', 'CONNECT', 'DISCONNECT', 'END']);
  const [, lookup, connect, disconnect] = s.events;
  t.is(lookup!.message, 'Route "r" selected');
  t.is(connect!.message, 'Session connected');
  t.is(disconnect!.content, 'ECONNRESET');
  t.false('content' in connect!, 'no content key where none was given');
  const times = s.events.map((e) => Date.parse(e.timestamp));
  t.true(times.every((x, i) => x >= s.started && (i === 0 || x >= times[i - 1]!)), JSON.stringify(s.events));
});

test('events: a session whose lookup failed has INIT and the error, nothing synthesized', (t) => {
  const s = session();
  s.event('ERROR', 'No route for session "s1"', 'NO_ROUTE');
  t.deepEqual(names(s), ['INIT', 'ERROR']);
});

test('events: at most 64; INIT stays and the oldest after it go first, LOOKUP SUCCESS and CONNECT included', (t) => {
  const s = session();
  s.lookedUp('Route "r" selected');
  s.connectedAll();
  for (let i = 0; i < 61; i++) s.event('E', `e${i}`);
  t.is(s.events.length, 64);
  t.deepEqual(names(s).slice(0, 3), ['INIT', 'LOOKUP SUCCESS', 'CONNECT']);
  s.event('E', 'e61');
  t.deepEqual(names(s).slice(0, 3), ['INIT', 'CONNECT', 'E'], 'LOOKUP SUCCESS went first');
  s.event('E', 'e62');
  t.deepEqual(names(s).slice(0, 2), ['INIT', 'E'], 'then CONNECT');
  for (let i = 63; i < 100; i++) s.event('E', `e${i}`);
  const ev = s.events;
  t.is(ev.length, 64);
  t.is(ev[0]!.event, 'INIT');
  t.deepEqual(ev.slice(1).map((e) => e.message), Array.from({ length: 63 }, (_, i) => `e${37 + i}`), 'the newest 63 others, in order');
});

test('stages(): source, ingress, egress, destination, as one array once the route set them', (t) => {
  const s = session();
  t.deepEqual(s.stages().map((x) => x.role), ['source']);
  const ing = new Stage('ingress', 'i');
  const eg = new Stage('egress', 'e');
  const dst = new Stage('destination', 'c');
  s.setStages(dst, [ing], [eg]);
  t.deepEqual(s.stages(), [s.source, ing, eg, dst]);
  t.is(s.stages(), s.stages(), 'the same array on every call');
  const bare = session();
  bare.setStages(new Stage('destination', 'c'), [], []);
  t.is(bare.ingress, session().ingress, 'routes without transforms share the empty chain');
});
