// The one check of a log level name, wherever it comes from: -l on the command
// line, admin.log_level in the static config, or applyAdmin over REST. Kept
// apart from admin.ts so that the CLI checks -l without loading the schemas.

import { invalid } from '../core/errors.js';
import { LEVEL_NAMES, isLevelName, type LevelName } from '../observe/log.js';

export function unknownLevel(value: unknown): string {
  return `unknown log level "${String(value)}"; one of ${LEVEL_NAMES.join(', ')}`;
}

/** `value` as a level name, or invalid(field) saying which names there are. */
export function parseLogLevel(value: unknown, field: string): LevelName {
  if (!isLevelName(value)) throw invalid(field, unknownLevel(value));
  return value;
}
