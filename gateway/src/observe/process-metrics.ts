// prom-client's process and Node.js metrics (process_cpu_seconds_total,
// nodejs_heap_size_used_bytes, ...), with one collector of our own:
// process_open_fds. prom-client counts open descriptors by listing
// /proc/self/fd, a string per descriptor: 20-30 ms of the event loop per
// scrape at 18,000 UDP sessions. The fd budget's count is one stat (Linux 6.2
// and later) for the same value, under the same name and help; on older
// kernels a listing, spaced out as the budget spaces its own.

import { Gauge, collectDefaultMetrics, type Registry } from 'prom-client';
import { OpenFdCount } from '../core/fd-budget.js';

export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  if (registry.getSingleMetric('process_open_fds') === undefined) return; // not Linux: prom-client has none either
  registry.removeSingleMetric('process_open_fds');
  const fds = new OpenFdCount();
  new Gauge({
    name: 'process_open_fds', help: 'Number of open file descriptors.', registers: [registry],
    collect() {
      const n = fds.read();
      if (n !== undefined) this.set(n);
    },
  });
}
