// Logging with pino, speaking l7mp's level names. The hot path never formats
// a log line unless the level is enabled: call sites test `log.isLevelEnabled`
// or use the level method directly (pino checks the level before formatting).

import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';
import { logIsTty, textDestination, type LogFormat } from './log-text.js';

export const LEVELS = {
  silly: 10,
  verbose: 20,
  info: 30,
  http: 31, // npmlog level l7mp accepted; logged as info-ish
  timing: 32,
  notice: 35,
  warn: 40,
  error: 50,
} as const;

export type LevelName = keyof typeof LEVELS | 'silent';
export const LEVEL_NAMES: readonly string[] = [...Object.keys(LEVELS), 'silent'];

export type Logger = PinoLogger<keyof typeof LEVELS>;

export function isLevelName(v: unknown): v is LevelName {
  return typeof v === 'string' && LEVEL_NAMES.includes(v);
}

export function destinationFor(logFile: string | undefined): DestinationStream {
  if (logFile === undefined || logFile === 'stdout' || logFile === '-') return pino.destination({ dest: 1, sync: true });
  if (logFile === 'stderr') return pino.destination({ dest: 2, sync: true });
  return pino.destination({ dest: logFile, sync: false, mkdir: true });
}

/** format text: readable lines (log-text.ts), coloured on a terminal unless NO_COLOR is set. */
export function createLogger(level: LevelName = 'info', logFile?: string, format: LogFormat = 'json'): Logger {
  const dest = destinationFor(logFile);
  return pino(
    {
      customLevels: LEVELS,
      useOnlyCustomLevels: true,
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    format === 'text' ? textDestination(dest, logIsTty(logFile) && !process.env.NO_COLOR) : dest,
  ) as Logger;
}

/** A logger that drops everything, for tests and tools. */
export function silentLogger(): Logger {
  return pino({ customLevels: LEVELS, useOnlyCustomLevels: true, level: 'silent' }) as Logger;
}
