// The gateway side of "readiness means the operator's configuration is
// applied": admin.managed (static config only) and admin.generation (set by
// the operator through applyAdmin), on an in-process gateway.

import test from 'ava';
import { L7mpClient, L7mpClientError } from '../../gateway/src/api/generated/client.js';
import { freePort, startGw } from '../../gateway/test/integration/helpers.js';

async function managedGateway(t: Parameters<typeof startGw>[0], managed: boolean) {
  const adminPort = await freePort();
  const { base } = await startGw(t, { admin: { log_level: 'silent', managed, metrics: { address: '127.0.0.1', port: adminPort }, limits: { api_rate: 0 } } });
  const ready = async () => { const r = await fetch(`http://127.0.0.1:${adminPort}/ready`); return { status: r.status, body: await r.json() as Record<string, unknown> }; };
  return { client: new L7mpClient(base), ready };
}

test('a managed gateway is not ready until a generation is set; the generation shows in /ready and getAdmin', async (t) => {
  const { client, ready } = await managedGateway(t, true);
  const before = await ready();
  t.is(before.status, 503);
  t.deepEqual(before.body.reasons, ['waiting for the operator to apply its configuration (admin.generation)']);
  t.like(await client.getAdmin(), { managed: true });
  t.is((await client.getAdmin()).generation, undefined);
  t.like(await client.applyAdmin({ admin: { generation: 'abc123' } }), { status: 200 });
  t.deepEqual(await ready(), { status: 200, body: { ready: true, generation: 'abc123' } });
  t.like(await client.getAdmin(), { managed: true, generation: 'abc123' });
});

test('admin.managed cannot be changed through the API, and a bad generation is refused without a change', async (t) => {
  const { client, ready } = await managedGateway(t, true);
  const managedErr = await t.throwsAsync(client.applyAdmin({ admin: { managed: false } }), { instanceOf: L7mpClientError });
  t.is(managedErr!.status, 403);
  for (const generation of ['', 'has space', 'x'.repeat(257)]) {
    const e = await t.throwsAsync(client.applyAdmin({ admin: { generation } }), { instanceOf: L7mpClientError });
    t.is(e!.status, 400);
    t.like(e!.body, { code: 'INVALID_INPUT', field: 'admin.generation' });
  }
  t.is((await ready()).status, 503, 'nothing changed');
});

test('an unmanaged gateway is ready without a generation (the default)', async (t) => {
  const { client, ready } = await managedGateway(t, false);
  t.deepEqual(await ready(), { status: 200, body: { ready: true } });
  t.is((await client.getAdmin()).managed, undefined);
});
