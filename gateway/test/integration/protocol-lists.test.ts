// Every list of protocols outside the registry is generated from it: the
// spec's ListenerProtocol and ClusterProtocol enums (scripts/gen-protocols.mjs),
// the generated TypeScript constants, the CRDs' protocol keys and the
// operator's conversion. These tests fail when one of them is stale.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { ClusterProtocolStaticOnly, ClusterProtocolValues, ListenerProtocolValues } from '../../src/api/generated/types.js';
import { PROTOCOLS } from '../../src/protocols/registry.js';
import { ConvertError, PROTOCOL_KEYS, convertProtocolSpec } from '../../../operator/src/convert.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const SPEC = path.join(ROOT, 'openapi/l7mp.yaml');
const GEN = path.join(ROOT, 'scripts/gen-protocols.mjs');

const namesFor = (side: 'listener' | 'cluster') => PROTOCOLS.filter((p) => p[side] !== undefined).flatMap((p) => [p.name, ...(p.aliases ?? [])]);
const staticOnly = PROTOCOLS.filter((p) => p.staticOnly).map((p) => p.name);

test('the spec\'s protocol enums are the registry\'s names and aliases by role (gen-protocols --check), no Test, with UNIX/seqpacket', (t) => {
  t.notThrows(() => execFileSync(process.execPath, [GEN, '--check'], { cwd: ROOT, stdio: 'pipe' }), 'openapi/l7mp.yaml is stale: run `npm run gen`');
  const schemas = parse(fs.readFileSync(SPEC, 'utf8')).components.schemas;
  t.deepEqual(schemas.ListenerProtocol.enum, namesFor('listener'));
  t.deepEqual(schemas.ClusterProtocol.enum, namesFor('cluster'));
  t.deepEqual(schemas.ClusterProtocol['x-l7mp-static-only'], staticOnly);
  t.is(schemas.ListenerSpec.properties.protocol.$ref, '#/components/schemas/ListenerProtocol');
  t.is(schemas.ClusterSpec.properties.protocol.$ref, '#/components/schemas/ClusterProtocol');
  for (const list of [schemas.ListenerProtocol.enum, schemas.ClusterProtocol.enum]) {
    t.false(list.includes('Test'), 'l7mp\'s Test protocol does not exist here');
    t.true(list.includes('UNIX/seqpacket'));
  }
  // The specs that take a protocol point at the enums instead of listing protocols by hand.
  for (const name of ['ListenerSpec', 'ClusterSpec']) t.notRegex(String(schemas[name].description), /\bTest\b|UNIX\/dgram|JSONEncap/, name);
  // And the generated TypeScript carries the same lists.
  t.deepEqual([...ListenerProtocolValues], namesFor('listener'));
  t.deepEqual([...ClusterProtocolValues], namesFor('cluster'));
  t.deepEqual([...ClusterProtocolStaticOnly], staticOnly);
});

test('gen-protocols --check fails on a spec whose block differs from the registry, and a write restores it', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-protocols-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const copy = path.join(dir, 'l7mp.yaml');
  const good = fs.readFileSync(SPEC, 'utf8');
  fs.writeFileSync(copy, good.replace(/(ListenerProtocol:[\s\S]*?enum: \[)UDP, /, '$1'));
  t.not(fs.readFileSync(copy, 'utf8'), good, 'the test removed UDP from the listener enum');
  const err = t.throws(() => execFileSync(process.execPath, [GEN, '--check', '--spec', copy], { cwd: ROOT, stdio: 'pipe' }));
  t.regex(String((err as { stderr?: Buffer }).stderr), /differs from the registry/);
  execFileSync(process.execPath, [GEN, '--spec', copy], { cwd: ROOT, stdio: 'pipe' });
  t.is(fs.readFileSync(copy, 'utf8'), good);
});

test('the CRDs offer exactly the REST-capable protocols of the registry as keys (plus l7mp\'s Sdtio for clusters)', (t) => {
  const crds = parseAllDocuments(fs.readFileSync(path.join(ROOT, 'charts/l7mp-operator/crds/l7mp.io-crds.yaml'), 'utf8')).map((d) => d.toJS());
  const descriptions = new Set<string>();
  const walk = (o: unknown): void => {
    if (Array.isArray(o)) { o.forEach(walk); return; }
    if (typeof o !== 'object' || o === null) return;
    const r = o as Record<string, unknown>;
    if (typeof r.description === 'string' && r.maxProperties === 1 && /keyed by its protocol/.test(r.description)) descriptions.add(r.description);
    Object.values(r).forEach(walk);
  };
  walk(crds);
  const keysOf = (d: string) => /exactly one of (.*?)(?: \(Sdtio|\. )/.exec(d)![1]!.split(', ');
  const listener = [...descriptions].filter((d) => d.startsWith('The listener'));
  const cluster = [...descriptions].filter((d) => d.startsWith('The cluster'));
  t.true(listener.length >= 1 && cluster.length >= 1);
  const rest = (names: string[]) => names.filter((n) => !staticOnly.includes(n));
  for (const d of listener) t.deepEqual(keysOf(d), rest(namesFor('listener')));
  const sdtio = staticOnly.includes('Stdio') ? [] : ['Sdtio']; // l7mp's spelling of Stdio, offered where Stdio is
  for (const d of cluster) t.deepEqual(keysOf(d), [...rest(namesFor('cluster')), ...sdtio]);
});

test('the operator converts every REST-capable registry protocol key and refuses unknown and static-only ones', (t) => {
  const expected = new Set([...namesFor('listener'), ...namesFor('cluster'), ...(staticOnly.includes('Stdio') ? [] : ['Sdtio'])].filter((n) => !staticOnly.includes(n)));
  t.deepEqual(new Set(PROTOCOL_KEYS), expected);
  t.deepEqual(convertProtocolSpec({ 'UNIX/seqpacket': { filename: '/run/x.sock' } }, 'spec'), { protocol: 'UNIX/seqpacket', filename: '/run/x.sock' });
  for (const bad of ['Test', 'Carrier-Pigeon', ...staticOnly, ...(staticOnly.includes('Stdio') ? ['Sdtio'] : [])]) {
    const err = t.throws(() => convertProtocolSpec({ [bad]: {} }, 'spec'), { instanceOf: ConvertError });
    t.regex(err!.message, /unknown protocol; one of .*UNIX\/seqpacket/);
  }
});
