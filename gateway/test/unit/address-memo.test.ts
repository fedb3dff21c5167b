// protocols/common/address-memo.ts: a cluster works an endpoint address out
// once, null answers are kept too, and the memo starts over at its bound.

import test from 'ava';
import { AddressMemo } from '../../src/protocols/common/address-memo.js';

test('each address is worked out once, a null answer included; at the bound the memo starts over', (t) => {
  const made: string[] = [];
  const m = new AddressMemo<string | null>((a) => {
    made.push(a);
    return a.startsWith('host') ? null : `target ${a}`;
  }, 3);
  t.is(m.get('10.0.0.1'), 'target 10.0.0.1');
  t.is(m.get('10.0.0.1'), 'target 10.0.0.1');
  t.is(m.get('host.example'), null);
  t.is(m.get('host.example'), null);
  t.deepEqual(made, ['10.0.0.1', 'host.example']);
  m.get('10.0.0.2');
  t.is(m.size, 3);
  m.get('10.0.0.3'); // a fourth address: the memo starts over with it
  t.is(m.size, 1);
  m.get('10.0.0.1');
  t.deepEqual(made, ['10.0.0.1', 'host.example', '10.0.0.2', '10.0.0.3', '10.0.0.1']);
});
