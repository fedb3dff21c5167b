// CONTRIBUTING.md's "Adding a protocol", followed once: the Caesar transform
// in gateway/test/fixtures/protocols/caesar/ is written as the recipe says,
// and these tests check what the recipe promises for it. The registry takes
// it (registerProtocolForTest stands in for its line in PROTOCOLS); the
// generators put it into the spec's enums, the generated constants and the
// CRDs; the conformance matrix gives it a column; and a real UDP session
// through an in-process gateway comes out of it transformed.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import { buildMatrix, DEFAULT_PEERS, noPeer } from '../../../conformance/matrix.js';
import type { TransformPeer } from '../../../conformance/peers.js';
import { GatewayError } from '../../src/core/errors.js';
import { findProtocol, PROTOCOLS, protocolFor, registerProtocolForTest } from '../../src/protocols/registry.js';
import { caesarProtocol } from '../fixtures/protocols/caesar/index.js';
import { api, echo, freePort, nextMessage, peer, startGw, tcpRoundTrip, udpClient } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../../..');
const FIXTURE_SRC = path.join(ROOT, 'gateway/test/fixtures/protocols/caesar');
const SPEC = path.join(ROOT, 'openapi/l7mp.yaml');

/** The fixture registered for the duration of one test. */
function registered(t: { teardown(fn: () => void): void }): void {
  t.teardown(registerProtocolForTest(caesarProtocol));
}

function rot(text: string, shift: number): string {
  return text.replace(/[A-Za-z]/g, (ch) => {
    const base = ch <= 'Z' ? 65 : 97;
    return String.fromCharCode(base + ((ch.charCodeAt(0) - base + shift) % 26));
  });
}

test.serial('the registry accepts the fixture by name and alias, case-insensitively, as a cluster only; unknown again once removed', (t) => {
  t.is(findProtocol('caesar'), undefined, 'the fixture is not a shipped protocol');
  const remove = registerProtocolForTest(caesarProtocol);
  try {
    t.is(protocolFor('Caesar', 'cluster', 'f'), caesarProtocol);
    t.is(protocolFor('rot', 'cluster', 'f'), caesarProtocol);
    const asListener = t.throws(() => protocolFor('caesar', 'listener', 'listener.spec.protocol'), { instanceOf: GatewayError });
    t.regex(asListener!.message, /cannot be used in a listener \(cluster only\)/);
    t.throws(() => registerProtocolForTest({ ...caesarProtocol, name: 'udp', aliases: [] }), { message: /udp already names a protocol/ });
  } finally {
    remove();
  }
  t.is(findProtocol('Caesar'), undefined);
  t.is(findProtocol('ROT'), undefined);
});

test('the fixture imports only what a protocol may: protocols/common, protocols/types, native, dataplane, core errors and limits; never another protocol', (t) => {
  const allowed = [/^gateway\/src\/protocols\/common\//, /^gateway\/src\/protocols\/types\.ts$/, /^gateway\/src\/native\//, /^gateway\/src\/dataplane\//, /^gateway\/src\/core\/(errors|limits)\.ts$/];
  const files = fs.readdirSync(FIXTURE_SRC).filter((f) => f.endsWith('.ts'));
  t.deepEqual(files.sort(), ['channel.ts', 'index.ts']);
  const bad: string[] = [];
  let checked = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(FIXTURE_SRC, f), 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)) {
      const spec = m[1]!;
      checked++;
      if (!spec.startsWith('.')) { bad.push(`${f}: ${spec} (a package: protocols reach them through common/ or native/)`); continue; }
      const resolved = path.resolve(FIXTURE_SRC, spec).replace(/\.js$/, '.ts');
      if (path.dirname(resolved) === FIXTURE_SRC) continue; // its own files
      const rel = path.relative(ROOT, resolved);
      if (!allowed.some((re) => re.test(rel))) bad.push(`${f}: ${spec} -> ${rel}`);
    }
  }
  t.true(checked >= 4, `found ${checked} imports`);
  t.deepEqual(bad, []);
});

test('npm run gen would list it: gen-protocols puts it into the cluster enum, gen-openapi into ClusterProtocolValues, gen-crds into the cluster keys', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-addproto-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const gen = await import(pathToFileURL(path.join(ROOT, 'scripts/gen-protocols.mjs')).href) as { withProtocols(spec: string, protocols: readonly unknown[]): string };
  const specText = fs.readFileSync(SPEC, 'utf8');
  const withCaesar = gen.withProtocols(specText, [...PROTOCOLS, caesarProtocol]);
  const schemas = parse(withCaesar).components.schemas;
  t.deepEqual(schemas.ClusterProtocol.enum.slice(-2), ['Caesar', 'ROT'], 'name then aliases, in registry order (last)');
  t.false(schemas.ListenerProtocol.enum.includes('Caesar'), 'no listener side, no listener enum entry');
  t.regex(schemas.ClusterProtocol.description, /ROT for Caesar/);
  t.is(gen.withProtocols(withCaesar, PROTOCOLS), specText, 'only the generated block changed');

  const spec = path.join(dir, 'l7mp.yaml');
  fs.writeFileSync(spec, withCaesar);
  const out = path.join(dir, 'generated');
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/gen-openapi.mjs'), '--spec', spec, '--out', out], { cwd: ROOT, stdio: 'pipe' });
  const types = fs.readFileSync(path.join(out, 'types.ts'), 'utf8');
  t.regex(types, /export const ClusterProtocolValues: readonly string\[\] = \[[^\]]*"Caesar","ROT"\]/);
  t.notRegex(/export const ListenerProtocolValues[^\n]*/.exec(types)![0], /Caesar/);
  const crds = path.join(dir, 'crds.yaml');
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/gen-crds.mjs'), '--spec', spec, '--out', crds], { cwd: ROOT, stdio: 'pipe' });
  const crdText = fs.readFileSync(crds, 'utf8');
  t.regex(crdText, /The cluster[^\n]*exactly one of [^\n]*\bCaesar, ROT\b/);
  t.notRegex(crdText, /The listener[^\n]*exactly one of [^\n]*\bCaesar\b/);
});

test('the conformance matrix gives it a transform column on the UDP and TCP base pairs: skipped without a peer, run with one', (t) => {
  const protocols = [...PROTOCOLS, caesarProtocol];
  const without = buildMatrix(protocols);
  const col = without.cols.find((c) => c.id === 'Caesar');
  t.truthy(col, 'a column of its own');
  t.is(col!.kind, 'transform');
  t.is(col!.skipAll, noPeer('Caesar'));
  t.false(without.rows.some((r) => r.id === 'Caesar'), 'no listener side, no row');
  const cells = without.cells.filter((c) => c.col.id === 'Caesar');
  t.deepEqual(cells.filter((c) => c.type === 'skip').map((c) => c.row.id), ['UDP', 'TCP']);
  t.true(cells.filter((c) => c.type === 'skip').every((c) => c.type === 'skip' && c.reason === noPeer('Caesar')));
  t.true(cells.filter((c) => c.row.id !== 'UDP' && c.row.id !== 'TCP').every((c) => c.type === 'na'));

  // The TRANSFORM_PEERS entry CONTRIBUTING.md asks for: ROT13 both ways is the identity on an echo path.
  const peer: TransformPeer = {
    label: 'Caesar',
    covers: ['Caesar'],
    effect: 'identity',
    chains: (_kind, id) => ({
      ingress: [{ name: `rot-in-${id}`, spec: { protocol: 'Caesar' } }],
      egress: [{ name: `rot-out-${id}`, spec: { protocol: 'Caesar' } }],
    }),
  };
  const withPeer = buildMatrix(protocols, { ...DEFAULT_PEERS, transforms: [...DEFAULT_PEERS.transforms, peer] });
  const run = withPeer.cells.filter((c) => c.col.id === 'Caesar' && c.type === 'run');
  t.deepEqual(run.map((c) => c.row.id), ['UDP', 'TCP']);
  t.is(buildMatrix().cols.find((c) => c.id === 'Caesar'), undefined, 'the shipped matrix is untouched');
});

/** A UDP echo upstream on a real socket that also keeps what it received. */
async function recordingEcho(t: { teardown(fn: () => unknown): void }): Promise<{ port: number; got: Buffer[] }> {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m, from) => {
    got.push(m);
    sock.send(m, from.port, from.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => sock.close(() => resolve())));
  return { port: sock.address().port, got };
}

test.serial('a UDP session through a real gateway: Caesar in the ingress chain shifts what the upstream gets; shift 3 in, 23 out restores it', async (t) => {
  registered(t);
  const up = await recordingEcho(t);
  const [oneWay, bothWays] = [await freePort(), await freePort()];
  const upstream = { name: 'up', spec: { protocol: 'UDP', port: up.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
  const listener = (name: string, port: number, route: Record<string, unknown>) => ({
    name, spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: [{ action: { route: { destination: 'up', ...route } } }],
  });
  const { base } = await startGw(t, {
    clusters: [upstream],
    listeners: [
      listener('rot13', oneWay, { ingress: [{ name: 'rot13-in', spec: { protocol: 'caesar' } }] }),
      listener('shift3', bothWays, {
        ingress: [{ name: 'shift-in', spec: { protocol: 'ROT', shift: 3 } }],
        egress: [{ name: 'shift-out', spec: { protocol: 'Caesar', shift: 23 } }],
      }),
    ],
  });
  const c = await udpClient();
  t.teardown(() => c.close());
  const text = 'Hello, World! 0-9 zZ';

  let reply = nextMessage(c);
  c.send(Buffer.from(text), oneWay, '127.0.0.1');
  t.is((await reply).toString(), rot(text, 13), 'the echo of the shifted message, unshifted on the way back (no egress)');
  t.is(up.got.at(-1)!.toString(), 'Uryyb, Jbeyq! 0-9 mM');

  reply = nextMessage(c);
  c.send(Buffer.from(text), bothWays, '127.0.0.1');
  t.is((await reply).toString(), text, 'shift 3 there and 23 back is the identity');
  t.is(up.got.at(-1)!.toString(), rot(text, 3));
  t.is(up.got.length, 2);

  // The sessions list the fixture's stages like any transform's.
  const sessions = (await api(base, 'GET', '/api/v1/sessions')).body as Array<{ source: { origin: string }; ingress: Array<{ origin: string }> }>;
  const s = sessions.find((x) => x.source.origin === 'shift3');
  t.deepEqual(s?.ingress.map((st) => st.origin), ['shift-in']);
});

test.serial('a TCP session (the other base pair): ROT13 on the way in and out is the identity over a socat echo, and the stream in between is shifted', async (t) => {
  registered(t);
  const [echoPort, both, inOnly] = [await freePort(), await freePort(), await freePort()];
  await peer(t, echo.tcp(echoPort));
  const listener = (name: string, port: number, route: Record<string, unknown>) => ({
    name, spec: { protocol: 'TCP', address: '127.0.0.1', port }, rules: [{ action: { route: { destination: 'up', ...route } } }],
  });
  await startGw(t, {
    clusters: [{ name: 'up', spec: { protocol: 'TCP', port: echoPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    listeners: [
      listener('tcp-both', both, { ingress: [{ spec: { protocol: 'Caesar' } }], egress: [{ spec: { protocol: 'Caesar' } }] }),
      listener('tcp-in', inOnly, { ingress: [{ spec: { protocol: 'Caesar' } }] }),
    ],
  });
  const text = 'The quick brown fox jumps over the lazy dog. '.repeat(200);
  t.is((await tcpRoundTrip(both, Buffer.from(text))).toString(), text);
  t.is((await tcpRoundTrip(inOnly, Buffer.from(text))).toString(), rot(text, 13));
});

test.serial('its spec parsing: a REST call with a bad shift gets 400 naming the field, and the clusters stay as they were', async (t) => {
  registered(t);
  const { base } = await startGw(t, { clusters: [{ name: 'ok', spec: { protocol: 'Caesar', shift: 1 } }] });
  const before = await api(base, 'GET', '/api/v1/clusters');
  t.is(before.status, 200);
  for (const shift of [26, 2.5, 'x']) {
    const r = await api(base, 'POST', '/api/v1/clusters', { cluster: { name: 'bad', spec: { protocol: 'Caesar', shift } } });
    t.is(r.status, 400, JSON.stringify(shift));
    t.is(r.body.field, 'cluster.spec.shift', r.text);
  }
  t.deepEqual((await api(base, 'GET', '/api/v1/clusters')).body, before.body);
  const good = await api(base, 'POST', '/api/v1/clusters', { cluster: { name: 'rot7', spec: { protocol: 'rot', shift: 7 } } });
  t.is(good.status, 200, good.text);
});
