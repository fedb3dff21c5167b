// A logger that keeps its lines, for unit and integration tests alike (it opens
// nothing, so unit tests can use it without loading the integration rigs).

import { pino } from 'pino';
import { LEVELS, type Logger } from '../src/observe/log.js';

/** A logger at info level that keeps its lines, parsed (the gateway's admin.log_level must let them through). */
export function captureLogger(): { log: Logger; lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = [];
  const log = pino({ customLevels: LEVELS, useOnlyCustomLevels: true, level: 'info' }, {
    write: (s: string) => { lines.push(JSON.parse(s) as Record<string, any>); },
  }) as unknown as Logger;
  return { log, lines };
}
