// The human log format: one readable line per record instead of pino's JSON,
//   2026-12-04T23:40:01.123Z INFO    l7mp gateway started version=0.1.0 strict=false
// for people watching a terminal. It formats pino's own JSON line, so every
// call site logs the same way in both formats, and costs a parse per record:
// fine for a terminal, which is why JSON stays the default everywhere else.

import type { DestinationStream } from 'pino';
import { invalid } from '../core/errors.js';

export type LogFormat = 'json' | 'text';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'text'];

/** Does the log go to a terminal? (log_file as destinationFor reads it) */
export function logIsTty(logFile: string | undefined): boolean {
  if (logFile === undefined || logFile === 'stdout' || logFile === '-') return process.stdout.isTTY === true;
  if (logFile === 'stderr') return process.stderr.isTTY === true;
  return false;
}

/**
 * The format: L7MP_LOG_FORMAT when set, else admin.log_format, else text on a
 * terminal and JSON anywhere else (files, pipes, log collectors).
 */
export function resolveLogFormat(setting: unknown, envValue: string | undefined, logFile: string | undefined): LogFormat {
  if (envValue !== undefined && envValue !== '') {
    if (!LOG_FORMATS.includes(envValue as LogFormat)) throw invalid('L7MP_LOG_FORMAT', `must be json or text, got "${envValue}"`);
    return envValue as LogFormat;
  }
  if (setting !== undefined) {
    if (!LOG_FORMATS.includes(setting as LogFormat)) throw invalid('admin.log_format', `must be json or text, got ${JSON.stringify(setting)}`);
    return setting as LogFormat;
  }
  return logIsTty(logFile) ? 'text' : 'json';
}

const COLORS: Record<string, string> = {
  silly: '90', verbose: '90', info: '32', http: '32', timing: '32', notice: '36', warn: '33', error: '31',
};

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** One JSON record as a text line (and an error's stack on the lines after it). */
export function formatRecord(line: string, color = false): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const { time, level, msg, pid: _pid, hostname: _host, ...rest } = rec;
  const name = String(level ?? '').toUpperCase().padEnd(7);
  const lvl = color && COLORS[String(level)] !== undefined ? `\u001b[${COLORS[String(level)]}m${name}\u001b[0m` : name;
  let stack = '';
  const fields = Object.entries(rest).map(([k, v]) => {
    const err = v as { message?: unknown; stack?: unknown } | null;
    if (k === 'err' && typeof err === 'object' && err !== null && typeof err.stack === 'string') {
      stack = `\n    ${err.stack.split('\n').join('\n    ')}`;
      return `err=${value(err.message)}`;
    }
    return `${k}=${value(v)}`;
  });
  return `${String(time ?? '')} ${lvl} ${String(msg ?? '')}${fields.length > 0 ? ` ${fields.join(' ')}` : ''}${stack}\n`;
}

/** A pino destination that writes text lines into `dest`. */
export function textDestination(dest: DestinationStream, color: boolean): DestinationStream {
  return { write: (line: string) => dest.write(formatRecord(line, color)) };
}
