// Whether objects are garbage: full collections on demand (the flag set at
// run time, the function taken from a fresh context), then WeakRefs read.

import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Collect until every WeakRef is cleared, at most 20 full collections over
 * about 2 s, each after a turn (a WeakRef made or read in a turn holds its
 * target to its end). Native wrappers (uWS apps) free what they hold in
 * weak callbacks that V8 runs as later tasks, so one chain of objects may
 * take a few rounds. Throws with how many are still reachable.
 */
export async function allCollected(refs: WeakRef<object>[], what: string): Promise<void> {
  let alive = refs.length;
  for (let i = 0; i < 20 && alive > 0; i++) {
    await new Promise((r) => setTimeout(r, 10 * i));
    gc();
    alive = refs.filter((r) => r.deref() !== undefined).length;
  }
  if (alive > 0) throw new Error(`${alive} of ${refs.length} ${what} still reachable after 20 full collections`);
}
