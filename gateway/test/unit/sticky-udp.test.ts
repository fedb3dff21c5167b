// workers/sticky-udp.ts with a stand-in for the native selector: which group a
// worker's socket goes to, and that any failure but a vanished socket returns
// every group to the kernel's own spreading, logged once. The real selector
// runs in integration/workers-sticky.test.ts.

import test from 'ava';
import { StickyUdp, type ReuseportGroup } from '../../src/workers/sticky-udp.js';
import { captureLogger } from '../capture-log.js';

interface FakeGroup extends ReuseportGroup {
  readonly adds: Array<[number, number, number, string, number]>;
  closed: boolean;
  slots: number;
  readonly shared: ReuseportGroup | undefined;
}

function rig(fail?: (call: number) => Error | undefined) {
  const groups: FakeGroup[] = [];
  let calls = 0;
  const { log, lines } = captureLogger();
  const sticky = new StickyUdp(3, log, (workers, shareWith) => {
    if (workers !== 3) throw new Error('wrong worker count');
    const g: FakeGroup = {
      adds: [], closed: false, slots: 0, shared: shareWith,
      add(...args) {
        const err = fail?.(++calls);
        if (err !== undefined) throw err;
        this.adds.push(args);
        this.slots++;
      },
      live() { return this.slots; },
      close() { this.closed = true; },
    };
    groups.push(g);
    return g;
  });
  const warnings = () => lines.filter((l) => String(l.msg).startsWith('UDP flows are not sticky'));
  return { sticky, groups, warnings };
}

function errno(n: number, msg = 'failed'): Error {
  return Object.assign(new Error(msg), { errno: n });
}

test('one selector per shared address:port; a worker\'s socket goes to slot index - 1', (t) => {
  const { sticky, groups, warnings } = rig();
  sticky.add(1, 101, { fd: 20, address: '127.0.0.1', port: 5000 });
  sticky.add(3, 103, { fd: 21, address: '127.0.0.1', port: 5000 });
  sticky.add(2, 102, { fd: 22, address: '127.0.0.1', port: 5001 });
  t.is(groups.length, 2);
  t.deepEqual(groups[0]!.adds, [[101, 20, 0, '127.0.0.1', 5000], [103, 21, 2, '127.0.0.1', 5000]]);
  t.deepEqual(groups[1]!.adds, [[102, 22, 1, '127.0.0.1', 5001]]);
  t.is(groups[0]!.shared, undefined);
  t.is(groups[1]!.shared, groups[0], 'one table of displaced flows for every listener');
  t.true(sticky.active);
  t.is(warnings().length, 0);
  sticky.close();
  t.true(groups.every((g) => g.closed));
  sticky.add(2, 102, { fd: 23, address: '127.0.0.1', port: 5002 });
  t.is(groups.length, 2, 'a report after close opens nothing');
});

test('a socket that vanished before it was slotted is skipped; the selector stays', (t) => {
  const { sticky, groups, warnings } = rig((n) => (n === 2 ? errno(3, 'ESRCH') : n === 3 ? errno(9, 'EBADF') : undefined));
  for (let i = 1; i <= 4; i++) sticky.add(((i - 1) % 3) + 1, 100 + i, { fd: 20 + i, address: '127.0.0.1', port: 5000 });
  t.is(groups.length, 1);
  t.is(groups[0]!.adds.length, 2);
  t.false(groups[0]!.closed);
  t.true(sticky.active);
  t.is(warnings().length, 0);
  sticky.close();
});

test('any other failure returns every group to the kernel\'s spreading and is logged once', (t) => {
  const { sticky, groups, warnings } = rig((n) => (n === 3 ? errno(1, 'pidfd_getfd: Operation not permitted') : undefined));
  sticky.add(1, 101, { fd: 20, address: '127.0.0.1', port: 5000 });
  sticky.add(1, 101, { fd: 21, address: '127.0.0.1', port: 5001 });
  sticky.add(2, 102, { fd: 22, address: '127.0.0.1', port: 5000 });
  // Ignored from here on: no selector, no second line.
  sticky.add(3, 103, { fd: 23, address: '127.0.0.1', port: 5002 });
  t.is(groups.length, 2);
  t.true(groups.every((g) => g.closed), 'a half-filled selector would starve the sockets it could not slot');
  t.false(sticky.active);
  t.is(warnings().length, 1);
  t.is(warnings()[0]!.reason, 'pidfd_getfd: Operation not permitted');
});

test('a selector that cannot load leaves the kernel\'s spreading, logged once', (t) => {
  const { log, lines } = captureLogger();
  const sticky = new StickyUdp(2, log, () => { throw new Error('cannot load: Operation not permitted'); });
  t.is(sticky.active, undefined);
  sticky.add(1, 101, { fd: 20, address: '127.0.0.1', port: 5000 });
  sticky.add(2, 102, { fd: 20, address: '127.0.0.1', port: 5000 });
  t.false(sticky.active);
  t.deepEqual(lines.filter((l) => l.level === 40).map((l) => l.reason), ['cannot load: Operation not permitted']);
});

test('a group whose sockets all closed is released; the next socket on that port opens a new one', (t) => {
  const { sticky, groups } = rig();
  sticky.add(1, 101, { fd: 20, address: '127.0.0.1', port: 5000 });
  sticky.add(1, 101, { fd: 21, address: '127.0.0.1', port: 5001 });
  groups[0]!.slots = 0; // the kernel emptied its slots: the listener is gone from every worker
  sticky.releaseEmpty();
  t.true(groups[0]!.closed);
  t.false(groups[1]!.closed);
  sticky.add(2, 102, { fd: 22, address: '127.0.0.1', port: 5000 });
  t.is(groups.length, 3);
  t.is(groups[2]!.shared, groups[1], 'shared with a group still open');
  sticky.close();
});
