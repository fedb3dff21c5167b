// The package version, read from package.json next to dist/ (the repository
// root, or /app in the image). Light on purpose: `l7mp --version` and the
// health check must not load the gateway.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageVersion(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(fs.readFileSync(path.join(here, rel), 'utf8')) as { version: string }).version;
    } catch { /* try the next */ }
  }
  return '0.0.0';
}
