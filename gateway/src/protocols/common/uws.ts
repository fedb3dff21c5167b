// The one place that loads uWebSockets.js. Its authors do not publish it on
// npm; republished builds exist, each for a range of Node versions and glibc.
// We try them in order, load the native binary directly (never a package's
// silent pure-JS fallback), and say which one loaded or why none did.

import { createRequire } from 'node:module';
import path from 'node:path';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';
import { GatewayError } from '../../core/errors.js';
import { portSharing } from './reuseport.js';

export type Uws = typeof UwsTypes;

const require = createRequire(import.meta.url);

interface Candidate {
  readonly pkg: string;
  /** The native binary inside the package, for this platform and Node ABI. */
  readonly binary: (dir: string) => string;
}

const abi = `${process.platform}_${process.arch}_${process.versions.modules}`;

const CANDIDATES: readonly Candidate[] = [
  // Node 20, 22, 24, 25 (ABI 115, 127, 137, 141); needs glibc >= 2.38, so it
  // loads on Debian 13 (the images) but not on Debian 12.
  { pkg: '@btc-vision/uwebsockets.js', binary: (dir) => path.join(dir, `uws_${abi}.node`) },
  // Node 16-20, loads on Debian 12.
  { pkg: '@trufflesuite/uws-js-unofficial', binary: (dir) => path.join(dir, 'binaries', `uws_${abi}.node`) },
  // A user's own install from the authors' GitHub releases.
  { pkg: 'uWebSockets.js', binary: (dir) => path.join(dir, `uws_${abi}.node`) },
];

export interface UwsLoad {
  readonly uws: Uws | undefined;
  /** The package that loaded, or undefined. */
  readonly loaded: string | undefined;
  /** One line per candidate that did not load, with the reason. */
  readonly failures: readonly string[];
}

let cached: UwsLoad | undefined;

/** The package's folder: through package.json, or (when its `exports` hide that) its main file. */
function packageDir(pkg: string): string | undefined {
  for (const spec of [`${pkg}/package.json`, pkg]) {
    try {
      return path.dirname(require.resolve(spec));
    } catch { /* not installed, or not exported */ }
  }
  return undefined;
}

export function loadUws(): UwsLoad {
  if (cached) return cached;
  const failures: string[] = [];
  for (const c of CANDIDATES) {
    const dir = packageDir(c.pkg);
    if (dir === undefined) {
      failures.push(`${c.pkg}: not installed`);
      continue;
    }
    try {
      const uws = require(c.binary(dir)) as Uws;
      if (typeof uws.App !== 'function') throw new Error('the binary does not export App()');
      // Silence the banner some builds print at load.
      (uws as unknown as { _cfg?: (s: string) => void })._cfg?.('silent');
      cached = { uws, loaded: c.pkg, failures };
      return cached;
    } catch (err) {
      failures.push(`${c.pkg}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  cached = { uws: undefined, loaded: undefined, failures };
  return cached;
}

/** The loaded module, or an error that lists every reason. */
export function requireUws(): Uws {
  const l = loadUws();
  if (l.uws) return l.uws;
  throw new Error(`uWebSockets.js could not be loaded: ${l.failures.join('; ')}`);
}

export function uwsStatus(): string {
  const l = loadUws();
  return l.loaded ? `uWebSockets.js from ${l.loaded} (ABI ${process.versions.modules})` : `uWebSockets.js unavailable: ${l.failures.join('; ')}`;
}

/** ArrayBuffer views from uWS are valid only during the callback: copy out. */
export function copyBuffer(ab: ArrayBuffer): Buffer {
  return Buffer.from(ab.slice(0));
}

export function text(ab: ArrayBuffer): string {
  return Buffer.from(ab).toString('utf8');
}

/**
 * Listen exclusively (uWS defaults to SO_REUSEPORT, which would hide "address
 * in use"), except in a data-plane worker, where sharing the port with the
 * other workers is the point (the main process checked it is free).
 */
export function listenUws(uws: Uws, app: UwsTypes.TemplatedApp, address: string, port: number, what: string): Promise<UwsTypes.us_listen_socket> {
  return new Promise((resolve, reject) => {
    // The typings lack the (host, port, options, cb) overload that the binary has.
    const exclusive = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT?: number }).LIBUS_LISTEN_EXCLUSIVE_PORT ?? 1;
    const listen = app.listen as unknown as (h: string, p: number, o: number, cb: (t: UwsTypes.us_listen_socket | false) => void) => void;
    listen.call(app, address, port, portSharing.on ? 0 : exclusive, (token) => {
      if (token) resolve(token);
      else reject(new GatewayError('BIND_FAILED', `${what} cannot listen on ${address}:${port}: address already in use or not available`));
    });
  });
}

/**
 * uWS.js never frees an App, closed or not (both builds we load: the App
 * object stays in V8's template instantiation cache), so whatever its
 * handlers close over lives as long as the process. A listener's handlers
 * reach it through one of these and nothing else; the listener empties it
 * once its App can no longer call them, and a deleted listener leaves only
 * the App's own memory behind (edge/leaks.test.ts), and the App itself waits
 * for the next listener in uws-pool.ts.
 */
export class UwsTarget<T extends object> {
  constructor(private target: T | undefined) {}

  get(): T | undefined {
    return this.target;
  }

  /** A reused App's next user (uws-pool.ts). */
  set(target: T): void {
    this.target = target;
  }

  release(): void {
    this.target = undefined;
  }
}
