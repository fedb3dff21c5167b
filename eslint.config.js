// ESLint guards the layout only (no style rules): no import cycles, a protocol
// never imports another protocol, core/dataplane never reach the native addon
// or the fast path directly, and unit tests stay off sockets and processes.
// It lints the TypeScript sources as they are, so it needs no build.
import { readdirSync } from 'node:fs';
import tsParser from '@typescript-eslint/parser';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

const PROTOCOLS = 'gateway/src/protocols';
const SRC = 'gateway/src';

// What a protocol folder may import inside gateway/src besides itself
// (paths relative to gateway/src). Everything else, another protocol
// included, is reached through the ProtocolDef services instead.
const PROTOCOL_MAY_IMPORT = [
  './protocols/common',
  './protocols/types.ts',
  './native',
  './dataplane',
  './core/errors.ts',
  './core/is-object.ts',
  './core/limits.ts',
  './core/depth.ts',
  './observe/log.ts',
  './observe/refusals.ts',
  './routing',
  './api/media.ts',
];

// One zone per protocol folder, read from disk so a new protocol is covered
// the day its folder appears. common/ gets the same allow-list: it is shared
// by every protocol, so it may not lean on any one of them.
const protocolZones = readdirSync(PROTOCOLS, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map(({ name }) => ({
    target: `${PROTOCOLS}/${name}`,
    from: SRC,
    except: [...new Set([`./protocols/${name}`, ...PROTOCOL_MAY_IMPORT])],
    message: `protocols/${name} may import only itself, ${PROTOCOL_MAY_IMPORT.join(', ')} (gateway/src-relative); never another protocol.`,
  }));

const fastPathZone = {
  target: [`${SRC}/core`, `${SRC}/dataplane`],
  from: [`${SRC}/native`, `${SRC}/fastpath`],
  message: 'core/ and dataplane/ reach the native addon and the fast path only through hooks registered from outside.',
};

export default [
  { ignores: ['dist/**', 'node_modules/**'] },
  {
    files: ['gateway/src/**/*.ts', 'conformance/**/*.ts', 'operator/src/**/*.ts'],
    languageOptions: { parser: tsParser, ecmaVersion: 2022, sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'off' },
    plugins: { 'import-x': importX },
    settings: {
      // no-cycle follows imports by parsing each imported file; without these
      // it skips .ts files and sees no cycle at all.
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      // Sources import './x.js' that resolve to './x.ts' (NodeNext); the
      // TypeScript resolver maps them, and an unresolved import would make
      // the path rules skip it silently.
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.json' })],
    },
    rules: {
      // Type-only imports are ignored: they vanish at runtime.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-restricted-paths': ['error', { zones: [...protocolZones, fastPathZone] }],
    },
  },
  {
    // Unit tests open no socket and start no process: not directly, and not
    // through the integration rigs.
    files: ['gateway/test/unit/**/*.ts'],
    languageOptions: { parser: tsParser, ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['net', 'dgram', 'child_process', 'http', 'https', 'http2', 'tls', 'worker_threads', 'cluster']
          .flatMap((m) => [m, `node:${m}`])
          .map((name) => ({ name, message: 'unit tests open no socket and start no process: this test belongs in gateway/test/integration/' })),
        patterns: [{ group: ['**/integration/**'], message: 'unit tests do not load the integration rigs' }],
      }],
    },
  },
];
