// Apps reused across listeners. uWebSockets.js never frees an App (uws.ts,
// UwsTarget), so a gateway whose listeners come and go over REST kept one
// App's memory (26-36 KiB, measured) per HTTP or WebSocket listener it ever
// made. Here a deleted listener's App, once every socket of it is closed,
// waits for the next listener with the same settings, which points the App's
// handlers at itself: the Apps a process holds are at most the most such
// listeners it had at once.
//
// An SSLApp reads its certificate when it is made, and a listener added
// later must serve the files as they are then: TLS Apps are made from the
// bytes checked when their listener was added (common/tls.ts withCheckedPem)
// and keyed by them (tlsAppKey), so a rotated certificate makes a new App
// and an unchanged one takes the waiting App.

import type * as U from '@trufflesuite/uws-js-unofficial';
import { GatewayError } from '../../core/errors.js';
import { tlsAppKey, withCheckedPem, type TlsFiles } from './tls.js';
import { UwsTarget, type Uws } from './uws.js';

/** What an App is made from. */
export interface AppSpec {
  readonly uws: Uws;
  /** The handlers' options the App is made with, as a string: only a listener with the same ones takes it. */
  readonly settings: string;
  /** Serve TLS with these checked files' bytes (an SSLApp). */
  readonly tls: TlsFiles | undefined;
  /** The listener, for errors: `HTTP listener "x"`. */
  readonly what: string;
}

/** The pool key of an App made from `spec`. */
function keyOf(spec: AppSpec): string {
  return spec.tls === undefined ? spec.settings : `${tlsAppKey(spec.tls)}/${spec.settings}`;
}

/**
 * A bare App: plain, or an SSLApp serving the checked bytes. `exact` false:
 * the SSLApp read the configured paths again (withCheckedPem), which may
 * hold other bytes than the key says by now, so it is never kept.
 */
function bareApp({ uws, tls, what }: AppSpec): { app: U.TemplatedApp; exact: boolean } {
  if (tls === undefined) return { app: uws.App(), exact: true };
  try {
    return withCheckedPem(tls, (cert, key, exact) => ({
      app: uws.SSLApp({ cert_file_name: cert, key_file_name: key, ...(tls.passphrase !== undefined ? { passphrase: tls.passphrase } : {}) }),
      exact,
    }));
  } catch (err) {
    throw new GatewayError('INVALID_INPUT', `${what}: TLS setup failed (${(err as Error).message}): check tls.cert_file and tls.key_file`);
  }
}

export interface PooledApp<T extends object> {
  readonly app: U.TemplatedApp;
  /** What the App's handlers reach their listener through; empty while the App waits. */
  readonly target: UwsTarget<T>;
  /** The spec the App was made from (keyOf); undefined: never reused. */
  readonly key: string | undefined;
}

export class UwsAppPool<T extends object> {
  private readonly idle = new Map<string, PooledApp<T>[]>();
  private madeCount = 0;

  /**
   * An App for `owner`: a waiting one made from the same spec (settings, and
   * TLS files that held the same bytes when checked), or a new one, given its
   * handlers by `register` over the target it is given.
   */
  take(spec: AppSpec, owner: T, register: (app: U.TemplatedApp, target: UwsTarget<T>) => U.TemplatedApp): PooledApp<T> {
    const key = keyOf(spec);
    const waiting = this.idle.get(key);
    const reused = waiting?.pop();
    if (waiting !== undefined && waiting.length === 0) this.idle.delete(key);
    if (reused !== undefined) {
      reused.target.set(owner);
      return reused;
    }
    const target = new UwsTarget<T>(owner);
    const made = bareApp(spec);
    const app = register(made.app, target);
    this.madeCount++;
    return { app, target, key: made.exact ? key : undefined };
  }

  /**
   * The user is done with the App: its handlers let go of the user, and
   * close() ends every socket still open on it (a kept-alive connection of a
   * deleted listener must never reach the next user). Not from inside one of
   * the App's own callbacks: close() runs their close handlers.
   */
  give(p: PooledApp<T>): void {
    p.target.release();
    // In both builds we load; the typings lack it. Without it the App's sockets would stay: not reused.
    const close = (p.app as unknown as { close?: () => void }).close;
    if (typeof close !== 'function') return;
    close.call(p.app);
    if (p.key === undefined) return;
    const waiting = this.idle.get(p.key);
    if (waiting === undefined) this.idle.set(p.key, [p]);
    else waiting.push(p);
  }

  /** Apps made so far (each one is kept by uWS for the life of the process). */
  get made(): number {
    return this.madeCount;
  }

  /** Apps waiting for a user. */
  get waiting(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }
}
