// The listener object a process builds for a listener the other side runs:
// the main process for a data-plane listener (the workers run it), a worker
// for a control-plane listener (the main process runs it). It binds nothing,
// so the graph, its names and its dumps are the same on both sides.

import type { ListenerImpl } from '../protocols/types.js';

export function standInListener(): ListenerImpl {
  return { start: () => Promise.resolve(), stop: () => Promise.resolve() };
}
