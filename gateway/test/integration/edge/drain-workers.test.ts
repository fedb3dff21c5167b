// The drain tests of drain.test.ts against gateways with 2 data-plane worker
// processes (admin.workers, docs/workers.md): SIGTERM reaches the main
// process, which stops the workers; each drains its own sessions for
// drain_timeout, and the main process waits for them before it exits.

process.env.L7MP_TEST_WORKERS = '2';
await import('./drain.test.js');
