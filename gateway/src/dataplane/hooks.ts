// The one list of session milestone hooks: metrics, the access log and the
// fast paths (kernel offload, splice) all learn of a session's life here, so
// the pipeline knows none of them by name.

import type { Session, Stage } from './session.js';

/**
 * What a hook may learn about a session. Every method is optional, runs
 * inline in the session's lifecycle (never per packet) and must be cheap and
 * synchronous. Byte and packet counts are not pushed through here: read them
 * from the session (`counters()`), which folds in any fast path's share.
 */
export interface SessionHooks {
  /** A listener emitted a session and the gateway accepted it (before routing). */
  onSessionStart?(session: Session): void;
  /** One connect attempt to a cluster failed (every attempt counts, retries included). */
  onConnectFailure?(session: Session, stage: Stage, err: unknown): void;
  /** A connect attempt is about to be retried: a setup retry or a reconnect after a disconnect. */
  onRetry?(session: Session, stage: Stage, phase: 'connect' | 'reconnect'): void;
  /** A cluster stage connected; `reconnect` is true after a disconnect (retry_on disconnect/always). */
  onStageConnect?(session: Session, stage: Stage, reconnect: boolean): void;
  /**
   * Every stage is connected and linked and the session forwards: once after
   * setup (unless a stage closed meanwhile) and again after each reconnect.
   * A fast path may take the forwarding over from here on.
   */
  onSessionLinked?(session: Session): void;
  /**
   * A stage closed or the session is ending: a fast path hands the forwarding
   * back to user space and folds its final counts into the links, before
   * anything reads them or changes the stages.
   */
  onSessionUnlinking?(session: Session): void;
  /**
   * The session is over (status DESTROYED, `ended` set): its link counters are
   * final. Called exactly once per started session.
   */
  onSessionEnd?(session: Session): void;
}

type Method = keyof SessionHooks;
type Fn<M extends Method> = NonNullable<SessionHooks[M]>;

/**
 * The registered hooks, called in registration order. Each milestone keeps
 * the bound methods of the hooks that have it: a call walks only those, with
 * no optional-method lookup per hook (the pipeline calls these a few times
 * per session, on every session).
 */
export class SessionHookList implements Required<SessionHooks> {
  private readonly hooks: SessionHooks[] = [];
  private readonly start: Fn<'onSessionStart'>[] = [];
  private readonly connectFailure: Fn<'onConnectFailure'>[] = [];
  private readonly retry: Fn<'onRetry'>[] = [];
  private readonly stageConnect: Fn<'onStageConnect'>[] = [];
  private readonly linked: Fn<'onSessionLinked'>[] = [];
  private readonly unlinking: Fn<'onSessionUnlinking'>[] = [];
  private readonly end: Fn<'onSessionEnd'>[] = [];

  add(hooks: SessionHooks): void {
    this.hooks.push(hooks);
    if (hooks.onSessionStart) this.start.push(hooks.onSessionStart.bind(hooks));
    if (hooks.onConnectFailure) this.connectFailure.push(hooks.onConnectFailure.bind(hooks));
    if (hooks.onRetry) this.retry.push(hooks.onRetry.bind(hooks));
    if (hooks.onStageConnect) this.stageConnect.push(hooks.onStageConnect.bind(hooks));
    if (hooks.onSessionLinked) this.linked.push(hooks.onSessionLinked.bind(hooks));
    if (hooks.onSessionUnlinking) this.unlinking.push(hooks.onSessionUnlinking.bind(hooks));
    if (hooks.onSessionEnd) this.end.push(hooks.onSessionEnd.bind(hooks));
  }

  /** What is registered (for tests and diagnostics). */
  get all(): readonly SessionHooks[] {
    return this.hooks;
  }

  onSessionStart(s: Session): void {
    for (const f of this.start) f(s);
  }

  onConnectFailure(s: Session, st: Stage, err: unknown): void {
    for (const f of this.connectFailure) f(s, st, err);
  }

  onRetry(s: Session, st: Stage, phase: 'connect' | 'reconnect'): void {
    for (const f of this.retry) f(s, st, phase);
  }

  onStageConnect(s: Session, st: Stage, reconnect: boolean): void {
    for (const f of this.stageConnect) f(s, st, reconnect);
  }

  onSessionLinked(s: Session): void {
    for (const f of this.linked) f(s);
  }

  onSessionUnlinking(s: Session): void {
    for (const f of this.unlinking) f(s);
  }

  onSessionEnd(s: Session): void {
    for (const f of this.end) f(s);
  }
}
