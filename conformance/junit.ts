// Machine-readable reports for CI: JUnit XML (one <testsuite> per pair, one
// <testcase> per case; <failure> and <skipped> as GitHub Actions' and GitLab's
// test report readers expect) and the whole RunResult as JSON.

import type { PairResult, RunResult } from './report.js';
import { summaryLine } from './report.js';

/** The JSON report's format version: bump it when a field changes meaning. */
export const JSON_REPORT_VERSION = 1;

// XML 1.0 allows neither these control characters nor lone surrogates, even escaped.
// eslint-disable-next-line no-control-regex
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function xmlEscape(s: string): string {
  return s.replace(INVALID_XML, '\uFFFD')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);
/** Failure messages go into an attribute: one line, bounded. */
const oneLine = (s: string) => (s.length > 500 ? `${s.slice(0, 500)}…` : s).replace(/\s*\n\s*/g, ' ');

function suite(p: PairResult): string {
  const failures = p.cases.filter((c) => c.status === 'fail').length;
  const skipped = p.cases.filter((c) => c.status === 'skip').length;
  const cls = xmlEscape(`conformance.${p.row}:${p.col}`);
  const cases = p.cases.map((c) => {
    const open = `    <testcase classname="${cls}" name="${xmlEscape(c.name)}" time="${seconds(c.ms)}"`;
    if (c.status === 'pass') return `${open}/>`;
    const why = c.reason ?? '';
    if (c.status === 'skip') return `${open}>\n      <skipped message="${xmlEscape(oneLine(why))}"/>\n    </testcase>`;
    return `${open}>\n      <failure message="${xmlEscape(oneLine(why))}" type="conformance">${xmlEscape(why)}</failure>\n    </testcase>`;
  });
  return [
    `  <testsuite name="${xmlEscape(p.key)}" tests="${p.cases.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${seconds(p.ms)}">`,
    ...cases,
    '  </testsuite>',
  ].join('\n');
}

/** JUnit XML: every pair that ran or was skipped; "not a pair" cells (·) are left out. */
export function renderJunit(r: RunResult): string {
  const pairs = r.pairs.filter((p) => p.type !== 'na');
  const tests = pairs.reduce((n, p) => n + p.cases.length, 0);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xmlEscape(`l7mp conformance (${r.mode} mode${r.gateway ? `, ${r.gateway}` : ''})`)}" tests="${tests}" failures="${r.failed}" errors="0" skipped="${r.skipped}" time="${seconds(r.durationMs)}">`,
    ...pairs.map(suite),
    '</testsuites>',
    '',
  ].join('\n');
}

/** The JSON report: the RunResult as it is, with a version and the closing line. */
export function renderJson(r: RunResult): string {
  return `${JSON.stringify({ version: JSON_REPORT_VERSION, summary: summaryLine(r), ...r }, null, 2)}\n`;
}
