// The REST fuzz tests of fuzz-api.test.ts, every one against gateways with 2
// data-plane worker processes (admin.workers, docs/workers.md): a change is
// prepared in the workers, applied in the main process and committed or
// aborted in all, so a rejected call must leave every process's
// configuration as it was. The helpers read L7MP_TEST_WORKERS per gateway.

process.env.L7MP_TEST_WORKERS = '2';
await import('./fuzz-api.test.js');
