// What the protocols share in protocols/common, without sockets: the idle
// sweep of flow tables (UDP, SCTP over UDP, UNIX/dgram), datagram splitting,
// bind errors in words, and the uWS App pool's keys.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GatewayError } from '../../src/core/errors.js';
import { MAX_UDP_PAYLOAD, sendInPieces } from '../../src/protocols/common/datagram.js';
import { IdleSweep, sweepEvery } from '../../src/protocols/common/flows.js';
import { bindError } from '../../src/protocols/common/socket.js';
import { UwsAppPool } from '../../src/protocols/common/uws-pool.js';

interface Flow { id: string; closed: boolean; activity: number; close(): void }
const flow = (id: string): Flow => ({ id, closed: false, activity: 0, close() { this.closed = true; } });

function sweeper(table: Map<string, Flow | string>, expired: string[], timeoutS = 10): IdleSweep<Flow> {
  return new IdleSweep<Flow>(timeoutS, {
    table: () => table,
    flow: (e) => (typeof e === 'string' ? undefined : e as Flow),
    takeActivity: (f) => { const n = f.activity; f.activity = 0; return n; },
    expired: (f) => { expired.push(f.id); f.close(); },
  });
}

test('the idle sweep ends a flow silent for the timeout, keeps busy ones, drops ended ones, and passes over entries that are not flows', (t) => {
  const busy = flow('busy');
  const quiet = flow('quiet');
  const ended = flow('ended');
  const table = new Map<string, Flow | string>([['a', busy], ['b', quiet], ['c', ended], ['d', 'pending']]);
  const expired: string[] = [];
  const s = sweeper(table, expired);
  s.sweep(0); // first sight: every flow's clock starts
  ended.closed = true;
  busy.activity = 3;
  s.sweep(9_999);
  t.deepEqual(expired, [], 'nothing is silent for 10 s yet');
  t.false(table.has('c'), 'an ended flow leaves the table');
  t.is(busy.activity, 0, 'the sweep takes the count');
  s.sweep(10_000);
  t.deepEqual(expired, ['quiet'], 'silent since 0: ended at 10 s; busy was seen at 9.999 s');
  t.is(table.get('d'), 'pending', 'a pending entry is never judged');
  s.sweep(19_998);
  t.deepEqual(expired, ['quiet'], 'closed by expired(): dropped, not expired twice');
  t.false(table.has('b'));
  s.sweep(19_999);
  t.deepEqual(expired, ['quiet', 'busy'], 'busy was last active at 9.999 s');
});

test('the sweep runs at a quarter of the timeout, between 250 ms and 10 s, and not at all for timeout 0', (t) => {
  t.is(sweepEvery(120), 10_000);
  t.is(sweepEvery(8), 2_000);
  t.is(sweepEvery(0.5), 250);
  const s = sweeper(new Map(), [], 0);
  s.start();
  t.is((s as unknown as { timer: unknown }).timer, undefined);
  const r = sweeper(new Map(), [], 1);
  r.start();
  t.not((r as unknown as { timer: unknown }).timer, undefined);
  r.retire();
  r.sweep();
  t.is((r as unknown as { timer: unknown }).timer, undefined, 'a retired sweep stops once its table is empty');
});

test('a chunk larger than a datagram goes out in pieces of at most the limit, in order; backpressure on any piece is reported', (t) => {
  const chunk = Buffer.alloc(2 * MAX_UDP_PAYLOAD + 10, 1);
  const sizes: number[] = [];
  const ok = sendInPieces(chunk, MAX_UDP_PAYLOAD, (p) => { sizes.push(p.byteLength); return sizes.length !== 2; });
  t.deepEqual(sizes, [MAX_UDP_PAYLOAD, MAX_UDP_PAYLOAD, 10]);
  t.false(ok, 'the second piece met backpressure');
  t.true(sendInPieces(Buffer.alloc(5), 4, () => true));
});

test('bind errors say why in words and keep the cause; a GatewayError passes through', (t) => {
  const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`bind ${code} 0.0.0.0:1`), { code });
  const inUse = bindError(errno('EADDRINUSE'), 'UDP listener "u" cannot bind 0.0.0.0:1');
  t.is(inUse.code, 'BIND_FAILED');
  t.is(inUse.message, 'UDP listener "u" cannot bind 0.0.0.0:1: address already in use');
  t.is(bindError(errno('EACCES'), 'x').message, 'x: permission denied');
  t.is(bindError(errno('EADDRNOTAVAIL'), 'x').message, 'x: address not available');
  t.is(bindError(errno('EINVAL'), 'x').message, 'x: bind EINVAL 0.0.0.0:1');
  const own = new GatewayError('BIND_FAILED', 'the path exists and is not a socket');
  t.is(bindError(own, 'x'), own);
});

test('App pool: an App is kept for its settings and its TLS files\' checked bytes, and an SSLApp reads those bytes, whatever the paths hold by then', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-pool-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const paths = { cert_file: path.join(dir, 'c.pem'), key_file: path.join(dir, 'k.pem') };
  // What parseTls returns once it has read and checked the files.
  const checked = (n: number) => ({ ...paths, cert: Buffer.from(`cert ${n}`), key: Buffer.from(`key ${n}`) });
  let closed = 0;
  const made = { plain: 0, ssl: 0 };
  const read: { cert: string; key: string; names: string[] }[] = [];
  const app = () => ({ close() { closed++; } });
  // Stands in for uWS: reads the files it is named, as SSLApp does; no socket is opened until listen, which the pool never does.
  const uws = {
    App: () => { made.plain++; return app(); },
    SSLApp: (o: { cert_file_name: string; key_file_name: string }) => {
      made.ssl++;
      read.push({ cert: fs.readFileSync(o.cert_file_name, 'utf8'), key: fs.readFileSync(o.key_file_name, 'utf8'), names: [o.cert_file_name, o.key_file_name] });
      return app();
    },
  } as never;
  const pool = new UwsAppPool<object>();
  const register = <A>(a: A): A => a;
  const spec = (settings: string, tls?: ReturnType<typeof checked>) => ({ uws, settings, tls, what: 'test listener' });
  // Plain: kept for its settings only.
  const a = pool.take(spec('s'), {}, register);
  pool.give(a);
  t.is(pool.take(spec('s'), {}, register), a);
  t.not(pool.take(spec('other'), {}, register), a);
  // The configured files hold other bytes after the check (or a FIFO, whose open by name would block): the App still serves what was checked.
  fs.writeFileSync(paths.cert_file, 'another cert');
  fs.writeFileSync(paths.key_file, 'another key');
  const b = pool.take(spec('s', checked(1)), {}, register);
  t.deepEqual(read.map(({ cert, key }) => ({ cert, key })), [{ cert: 'cert 1', key: 'key 1' }], 'the SSLApp read the checked bytes');
  t.false(read[0]!.names.includes(paths.cert_file) || read[0]!.names.includes(paths.key_file), 'not through the configured paths');
  t.false(read[0]!.names.some((n) => fs.existsSync(n)), 'the unnamed files are closed once the App is made');
  pool.give(b);
  t.is(pool.take(spec('s', checked(1)), {}, register), b, 'the same checked bytes take the waiting App');
  pool.give(b);
  const c = pool.take(spec('s', checked(2)), {}, register);
  t.not(c, b, 'rotated files (new bytes checked) make a new App');
  t.is(read[1]!.cert, 'cert 2');
  t.deepEqual(made, { plain: 2, ssl: 2 });
  pool.give(c);
  t.is(pool.waiting, 2, 'both TLS Apps wait');
  t.is(closed, 4, 'every App given back has its sockets closed');
});
