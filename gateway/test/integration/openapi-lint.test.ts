// The spec passes a mainstream OpenAPI linter, Redocly CLI (`redocly lint`,
// its recommended rules), with no errors: strict OAS 3.0 tools (ajv-based
// validators, client generators) take it. Offline: telemetry and the update
// check are switched off through Redocly's environment variables.

import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const SPEC = path.join(ROOT, 'openapi/l7mp.yaml');
const REDOCLY = path.join(path.dirname(createRequire(import.meta.url).resolve('@redocly/cli/package.json')), 'bin/cli.js');

interface Problem { ruleId: string; severity: 'error' | 'warn'; message: string; location: Array<{ pointer: string }> }

function lint(file: string): Promise<{ totals: { errors: number; warnings: number }; problems: Problem[] }> {
  const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', REDOCLY_SUPPRESS_NOTIFICATIONS: 'true' };
  return new Promise((resolve, reject) => {
    // Exit status 1 means "errors found": the JSON report says which.
    execFile(process.execPath, [REDOCLY, 'lint', file, '--format=json'], { env, cwd: ROOT, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      try { resolve(JSON.parse(stdout)); } catch { reject(new Error(`redocly lint gave no report (${err?.message ?? ''}):\n${stderr}`)); }
    });
  });
}

const show = (ps: Problem[]) => ps.map((p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer}: ${p.message}`).join('\n');

test('openapi/l7mp.yaml lints with 0 errors and 0 warnings under redocly lint', async (t) => {
  const r = await lint(SPEC);
  t.is(r.totals.errors, 0, show(r.problems));
  t.is(r.totals.warnings, 0, show(r.problems));
});

test('the linter catches what strict OAS 3.0 validators refuse: nullable beside anyOf without a type', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-lint-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bad = path.join(dir, 'l7mp.yaml');
  const text = fs.readFileSync(SPEC, 'utf8');
  const broken = text.replace(/(        endpoint:\n          description: [^\n]*\n)(          anyOf:)/, '$1          nullable: true\n$2');
  t.not(broken, text, 'the test put nullable back beside SessionStage.endpoint\'s anyOf');
  fs.writeFileSync(bad, broken);
  const r = await lint(bad);
  t.true(r.problems.some((p) => p.severity === 'error' && p.ruleId === 'nullable-type-sibling' && /SessionStage\/properties\/endpoint/.test(p.location[0]!.pointer)), show(r.problems));
});
