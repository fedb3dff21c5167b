// Apps reused across listeners. uWebSockets.js never frees an App (uws.ts,
// UwsTarget), so a gateway whose listeners come and go over REST kept one
// App's memory (26-36 KiB, measured) per HTTP or WebSocket listener it ever
// made. Here a deleted listener's App, once every socket of it is closed,
// waits for the next listener with the same settings, which points the App's
// handlers at itself: the Apps a process holds are at most the most such
// listeners it had at once.
//
// An SSLApp reads its certificate when it is made, and a listener added
// later must serve the files as they are then: TLS Apps are keyed by what
// the files held (common/tls.ts tlsAppKey), so a rotated certificate makes
// a new App and an unchanged one takes the waiting App.

import type * as U from '@trufflesuite/uws-js-unofficial';
import { UwsTarget } from './uws.js';

/** An App whose handlers were registered once, over a target each user sets. */
export interface PooledApp<T extends object> {
  readonly app: U.TemplatedApp;
  /** What the App's handlers reach their listener through; empty while the App waits. */
  readonly target: UwsTarget<T>;
  /** The settings the App was made with (its handlers' options): only a listener with the same ones takes it; undefined: never reused. */
  readonly key: string | undefined;
}

export class UwsAppPool<T extends object> {
  private readonly idle = new Map<string, PooledApp<T>[]>();
  private madeCount = 0;

  /**
   * An App for `owner`: a waiting one made with the same `key`, or a new one
   * from `make`, which registers the handlers over the target it is given.
   * Without a key the App is made, and closed when given back, never kept.
   * A key worked out from files before `make` read them is confirmed after
   * (`keyNow`): if the files changed in between, the App is never kept.
   */
  take(key: string | undefined, owner: T, make: (target: UwsTarget<T>) => U.TemplatedApp, keyNow?: () => string | undefined): PooledApp<T> {
    const waiting = key === undefined ? undefined : this.idle.get(key);
    const reused = waiting?.pop();
    if (key !== undefined && waiting !== undefined && waiting.length === 0) this.idle.delete(key);
    if (reused !== undefined) {
      reused.target.set(owner);
      return reused;
    }
    const target = new UwsTarget<T>(owner);
    const app = make(target);
    this.madeCount++;
    return { app, target, key: key !== undefined && keyNow !== undefined && keyNow() !== key ? undefined : key };
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
