// The confinement tests of confine.test.ts against gateways with 2 data-plane
// worker processes (admin.workers, docs/workers.md): a REST change is built
// in every worker before the main process validates it, so each worker must
// refuse what the static config does not allow (files outside file_root,
// static-only protocols, exposure) and a refused call must open nothing.

process.env.L7MP_TEST_WORKERS = '2';
await import('./confine.test.js');
