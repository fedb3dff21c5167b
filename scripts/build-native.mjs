#!/usr/bin/env node
// Builds every native addon under native/*/binding.gyp with node-gyp.
//
// Runs as the root package's install script, so `npm ci` builds the addons on
// a fresh machine. A failed build is not fatal: the gateway starts without the
// addon and reports the protocols that need it as unavailable. The reason is
// written to native/<name>/build/BUILD_FAILED so that the loader can say why.
// Under CI=true a failed build fails the install: CI must test the addons.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const require = createRequire(import.meta.url);

let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  console.warn('build-native: node-gyp is not installed (dev dependency); native addons not built');
  process.exit(process.env.CI === 'true' ? 1 : 0);
}

// Node's own headers, when the Node installation ships them (Debian/NodeSource
// packages put them in <prefix>/include/node). Without --nodedir node-gyp
// downloads the headers, which fails on a machine without network access.
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined; // the user chose already
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const versionH = path.join(prefix, 'include', 'node', 'node_version.h');
  let text;
  try { text = fs.readFileSync(versionH, 'utf8'); } catch { return undefined; }
  const part = (n) => text.match(new RegExp(`#define NODE_${n}_VERSION (\\d+)`))?.[1];
  const v = `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  return v === process.version && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

const nodeDir = localNodeDir();
const only = process.argv.slice(2);
let failed = 0;
// The tc-bpf object (offload/) goes with the bpf addon: built when clang is
// there, never fatal outside CI (the gateway then runs without offload).
if ((only.length === 0 || only.includes('bpf')) && fs.existsSync(path.join(root, 'offload', 'Makefile'))) {
  const hasClang = spawnSync('clang', ['--version']).status === 0;
  const r = hasClang ? spawnSync('make', ['-s', '-C', path.join(root, 'offload')], { encoding: 'utf8' }) : undefined;
  if (r?.status === 0) {
    console.log('build-native: offload/build/udp_offload.bpf.o built');
  } else {
    if (process.env.CI === 'true') failed++;
    console.warn(`build-native: the offload BPF object did not build: ${hasClang ? `${r?.stderr ?? ''}`.trim().split('\n').slice(-5).join('\n') : 'no clang'}`);
  }
}
for (const name of fs.existsSync(nativeDir) ? fs.readdirSync(nativeDir).sort() : []) {
  const dir = path.join(nativeDir, name);
  if (!fs.existsSync(path.join(dir, 'binding.gyp'))) continue;
  if (only.length > 0 && !only.includes(name)) continue;
  const marker = path.join(dir, 'build', 'BUILD_FAILED');
  const r = spawnSync(process.execPath, [gyp, 'rebuild', '--loglevel=warn', ...(nodeDir ? [`--nodedir=${nodeDir}`] : [])], { cwd: dir, encoding: 'utf8' });
  if (r.status === 0) {
    console.log(`build-native: ${name} built`);
    continue;
  }
  failed++;
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, `${out}\n`);
  console.warn(`build-native: ${name} did not build; the gateway runs without it. Last lines:\n${out}`);
}
process.exit(failed > 0 && process.env.CI === 'true' ? 1 : 0);
