// A config dump loads back. GET /api/v1/config shows each cluster's endpoints
// as a count (as l7mp does) and lists the endpoints once at the top level,
// each with the cluster it belongs to. Loading a config puts them back into
// their clusters, so that a dump restores what it was taken from, as a static
// config file or through POST /api/v1/config (a backup, or moving a gateway's
// configuration to another one).

import { invalid } from './errors.js';
import { isObject } from './is-object.js';

/**
 * `cfg` with every cluster whose `endpoints` is a count given the top-level
 * endpoints that name it; `cfg` itself when no cluster has a count. The
 * top-level list is otherwise ignored, as it always was.
 */
export function withDumpedEndpoints(cfg: Record<string, unknown>): Record<string, unknown> {
  const clusters = cfg.clusters;
  if (!Array.isArray(clusters) || !clusters.some((c) => isObject(c) && typeof c.endpoints === 'number')) return cfg;
  const byCluster = new Map<string, Record<string, unknown>[]>();
  for (const e of Array.isArray(cfg.endpoints) ? cfg.endpoints : []) {
    if (!isObject(e) || typeof e.cluster !== 'string') continue;
    // `status` is the endpoint's health as the dump saw it: state, not configuration.
    const { cluster, status: _status, ...endpoint } = e;
    const list = byCluster.get(cluster);
    if (list === undefined) byCluster.set(cluster, [endpoint]);
    else list.push(endpoint);
  }
  return {
    ...cfg,
    clusters: clusters.map((c, i) => {
      if (!isObject(c) || typeof c.endpoints !== 'number') return c;
      const listed = typeof c.name === 'string' ? byCluster.get(c.name) ?? [] : [];
      if (listed.length !== c.endpoints) {
        throw invalid(`clusters[${i}].endpoints`, `is a count (${c.endpoints}), as in a config dump, but the config's top-level endpoints name this cluster ${listed.length} times ` +
          '(each dumped endpoint carries "cluster"; a dump without it, such as l7mp\'s, cannot say whose endpoints they are: give them in the cluster instead)');
      }
      return { ...c, endpoints: listed };
    }),
  };
}
