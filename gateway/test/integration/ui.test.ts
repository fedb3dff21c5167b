// The live dashboard (/ui) driven in headless Chromium: a UDP session created
// by real traffic (dgram client -> gateway -> socat echo) appears in the page,
// its counters move while traffic flows, and its Delete button ends it (seen
// through REST). Also: the page asks for the bearer token when the controller
// requires one, and user-chosen object names are shown as text, never HTML.
//
// Needs Debian's `chromium` (scripts/setup-host.sh installs it). Without it
// the tests are skipped with the reason on a developer machine and fail with
// CI=true.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { api, echo, freePort, nextMessage, peer, startGw, udpClient, waitFor } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Loopback only, whatever proxy the environment names.
  '--no-proxy-server',
];
const UI_TIMEOUT_MS = 15_000;
const QUIET_ADMIN = { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 } };

let unavailable: string | undefined;

test.before(() => {
  if (!fs.existsSync(CHROMIUM)) unavailable = `${CHROMIUM} is missing: run 'bash scripts/setup-host.sh' (installs Debian's chromium)`;
});

/** Skip on a developer machine, fail on CI. Returns true when the test must stop here. */
function gate(t: ExecutionContext): boolean {
  if (unavailable === undefined) return false;
  if (process.env.CI === 'true') t.fail(unavailable);
  else {
    t.log(`skipped: ${unavailable}`);
    t.pass();
  }
  return true;
}

/**
 * One browser for the file, with a fresh profile (its own temp folder),
 * started on first use and closed (and the folder removed) after the last
 * test: starting Chromium takes seconds on a small machine. Every test opens
 * its own page against its own gateway (another port: another origin, so no
 * storage is shared).
 */
let shared: Promise<BrowserContext> | undefined;
let profile: string | undefined;

async function browser(t: ExecutionContext): Promise<BrowserContext | undefined> {
  shared ??= (async () => {
    const { chromium } = await import('playwright-core');
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-chromium-'));
    return chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
  })();
  try {
    return await shared;
  } catch (err) {
    unavailable = `chromium does not start: ${(err as Error).message.split('\n')[0]}`;
    gate(t);
    return undefined;
  }
}

test.after.always(async () => {
  await shared?.then((ctx) => ctx.close(), () => undefined);
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

/** A page that fails the test on script errors and accepts confirm() dialogs (the Delete button asks). */
async function openPage(t: ExecutionContext, ctx: BrowserContext, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await ctx.newPage();
  t.teardown(() => page.close());
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('dialog', (d) => { void d.accept(); });
  const res = await page.goto(url);
  t.is(res?.status(), 200);
  return { page, errors };
}

/** A numeric cell of the session row named `name` (its exact value, from data-value). */
function sessionValue(page: Page, name: string, field: string): Promise<number | undefined> {
  return page.evaluate(([n, f]) => {
    for (const tr of document.querySelectorAll('#sessions tr[data-session]')) {
      if (tr.getAttribute('data-session') !== n) continue;
      const v = tr.querySelector(`td[data-field="${f}"]`)?.getAttribute('data-value');
      return v === null || v === undefined || v === '' ? undefined : Number(v);
    }
    return undefined;
  }, [name, field] as const);
}

test.serial('dashboard: a UDP session appears, its counters move, and Delete ends it', async (t) => {
  if (gate(t)) return;
  const echoPort = await freePort();
  const listenPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const { base } = await startGw(t, {});
  let r = await api(base, 'POST', '/api/v1/clusters', {
    cluster: { name: 'echo-cluster', spec: { protocol: 'UDP', port: echoPort }, endpoints: [{ name: 'echo-ep', spec: { address: '127.0.0.1' } }] },
  });
  t.is(r.status, 200, r.text);
  r = await api(base, 'POST', '/api/v1/listeners', {
    listener: { name: 'udp-listener', spec: { protocol: 'UDP', address: '127.0.0.1', port: listenPort }, rules: [{ action: { route: { destination: 'echo-cluster' } } }] },
  });
  t.is(r.status, 200, r.text);

  const ctx = await browser(t);
  if (!ctx) return;
  const { page, errors } = await openPage(t, ctx, `${base}/ui`);

  // Listeners and clusters with their endpoints.
  await page.locator('#listeners tr[data-listener="udp-listener"]').waitFor();
  t.regex(await page.locator('#listeners tr[data-listener="udp-listener"]').innerText(), new RegExp(`UDP\\s+127\\.0\\.0\\.1\\s+${listenPort}`));
  t.is(await page.locator('#clusters tr[data-cluster="echo-cluster"] li[data-endpoint="echo-ep"]').innerText(), `echo-ep → 127.0.0.1:${echoPort}`);

  // Real traffic: a datagram every 50 ms, echoed back through the gateway.
  const client = await udpClient();
  t.teardown(() => client.close());
  let replies = 0;
  client.on('message', () => { replies++; });
  const first = nextMessage(client);
  const payload = Buffer.from('dashboard-probe-0123456789');
  client.send(payload, listenPort, '127.0.0.1');
  t.deepEqual(await first, payload);
  const sender = setInterval(() => client.send(payload, listenPort, '127.0.0.1'), 50);
  let sending = true;
  const stopSending = () => { if (sending) { sending = false; clearInterval(sender); } };
  t.teardown(stopSending);

  // The session appears in the page, and it is the one REST lists.
  const row = page.locator('#sessions tr[data-session]').filter({ has: page.locator('td[data-field="listener"]', { hasText: 'udp-listener' }) });
  await row.first().waitFor();
  t.is(await row.count(), 1);
  const name = (await row.getAttribute('data-session'))!;
  t.truthy(name);
  const listed = await api(base, 'GET', '/api/v1/sessions');
  t.true((listed.body as Array<{ name: string }>).some((s) => s.name === name), `REST lists ${name}`);
  t.is(await row.locator('td[data-field="destination"]').innerText(), 'echo-cluster');

  // Counters move between two reads while traffic flows, and so do the rates.
  const in1 = (await sessionValue(page, name, 'in-bytes'))!;
  const out1 = (await sessionValue(page, name, 'out-bytes'))!;
  t.true(in1 > 0, `in-bytes ${in1}`);
  await page.waitForFunction(([n, v]) => {
    const tr = [...document.querySelectorAll('#sessions tr[data-session]')].find((x) => x.getAttribute('data-session') === n);
    return Number(tr?.querySelector('td[data-field="in-bytes"]')?.getAttribute('data-value')) > v;
  }, [name, in1] as const);
  const in2 = (await sessionValue(page, name, 'in-bytes'))!;
  t.true(in2 > in1, `in-bytes ${in1} -> ${in2}`);
  t.true(in2 % payload.length === 0, 'bytes are whole datagrams');
  await waitFor(async () => ((await sessionValue(page, name, 'out-bytes')) ?? 0) > out1, UI_TIMEOUT_MS, 'out-bytes to grow');
  await waitFor(async () => ((await sessionValue(page, name, 'in-pps')) ?? 0) > 0, UI_TIMEOUT_MS, 'a packet rate above 0');
  t.true(((await sessionValue(page, name, 'in-bps')) ?? 0) > 0);
  t.true(replies > 1);

  // Quiet first, so that no new datagram re-creates the session; then Delete.
  stopSending();
  await row.locator('button.delete').click();
  await waitFor(async () => (await api(base, 'GET', `/api/v1/sessions/${encodeURIComponent(name)}`)).status === 404, UI_TIMEOUT_MS, `session ${name} to be gone`);
  await row.waitFor({ state: 'detached' });
  t.regex(await page.locator('#status').innerText(), /session deleted/);
  t.deepEqual(errors, []);
});

test.serial('dashboard: asks for the bearer token when the controller requires one', async (t) => {
  if (gate(t)) return;
  const token = 'dashboard-token-1234';
  const { base } = await startGw(t, { admin: { ...QUIET_ADMIN, api_token: token } });
  const ctx = await browser(t);
  if (!ctx) return;
  // The page loads without the token (it carries no data), the API does not.
  const { page } = await openPage(t, ctx, `${base}/ui`);
  t.is((await api(base, 'GET', '/api/v1/listeners')).status, 401);
  await page.locator('#auth').waitFor({ state: 'visible' });
  t.is(await page.locator('#listeners tbody tr').count(), 0);

  await page.locator('#token').fill('wrong-token');
  await page.locator('#auth button[type=submit]').click();
  await page.locator('#auth-error').filter({ hasText: 'invalid bearer token' }).waitFor();
  t.is(await page.locator('#listeners tbody tr').count(), 0);

  await page.locator('#token').fill(token);
  await page.locator('#auth button[type=submit]').click();
  await page.locator('#listeners tr[data-listener="controller-listener"]').waitFor();
  t.true(await page.locator('#auth').isHidden());
  t.regex(await page.locator('#status').innerText(), /live/);
});

test.serial('dashboard: object names are shown as text, never run as HTML', async (t) => {
  if (gate(t)) return;
  const { base } = await startGw(t, {});
  const evil = '<img/src=x/onerror=window.__pwned=1>';
  const evilEp = '"><script>window.__pwned=2</script>';
  const r = await api(base, 'POST', '/api/v1/clusters', {
    cluster: { name: evil, spec: { protocol: 'UDP', port: 9 }, endpoints: [{ name: evilEp, spec: { address: '127.0.0.1' } }] },
  });
  t.is(r.status, 200, r.text);
  const ctx = await browser(t);
  if (!ctx) return;
  const { page, errors } = await openPage(t, ctx, `${base}/ui`);
  const cell = page.locator('#clusters tbody td.name', { hasText: 'onerror' });
  await cell.waitFor();
  t.is(await cell.innerText(), evil);
  t.is(await page.locator('#clusters li[data-endpoint]').filter({ hasText: 'script' }).innerText(), `${evilEp} → 127.0.0.1:9`);
  t.is(await page.locator('#clusters img, #clusters script').count(), 0);
  t.is(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
  t.deepEqual(errors, []);
});

test.serial('API docs: swagger-ui renders the spec in the browser, from local assets only', async (t) => {
  if (gate(t)) return;
  const { base } = await startGw(t, {});
  const ctx = await browser(t);
  if (!ctx) return;
  const requested: string[] = [];
  const listen = (req: { url(): string }) => { requested.push(req.url()); };
  ctx.on('request', listen);
  t.teardown(() => { ctx.off('request', listen); });
  const { page, errors } = await openPage(t, ctx, `${base}/api/v1/docs`);
  // One block per operation, rendered from /api/v1/openapi.yaml.
  await page.locator('#operations-listeners-addListener').waitFor();
  t.true(await page.locator('.opblock').count() >= 30);
  t.deepEqual(requested.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith('data:')), [], 'requests to other origins');
  t.true(requested.includes(`${base}/api/v1/openapi.yaml`));
  t.deepEqual(errors, []);
});

test.serial('dashboard: an endpoint failing its health checks is marked unhealthy, with the reason on hover', async (t) => {
  if (gate(t)) return;
  const deadPort = await freePort();
  const { base } = await startGw(t, {});
  const r = await api(base, 'POST', '/api/v1/clusters', {
    cluster: {
      name: 'checked', spec: { protocol: 'TCP', port: deadPort },
      endpoints: [{ name: 'dead-ep', spec: { address: '127.0.0.1' } }],
      health_check: { interval: 100, timeout: 50, unhealthy_threshold: 1 },
    },
  });
  t.is(r.status, 200, r.text);
  const ctx = await browser(t);
  if (!ctx) return;
  const { page, errors } = await openPage(t, ctx, `${base}/ui`);
  const li = page.locator('#clusters tr[data-cluster="checked"] li[data-endpoint="dead-ep"][data-health="unhealthy"]');
  await li.waitFor({ timeout: 10_000 });
  t.is(await li.getAttribute('class'), 'unhealthy');
  t.regex(await li.innerText(), /\[unhealthy\]$/);
  t.regex((await li.getAttribute('title')) ?? '', /ECONNREFUSED/);
  t.deepEqual(errors, []);
});
