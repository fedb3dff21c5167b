// What both HTTP listener engines (uWebSockets.js in http/listener.ts,
// node:http in http/node-engine.ts) share about one exchange: the response
// goes out once (a whole respond(), or a head and a streamed body), a client
// that went away is never written to, and how a session's end becomes the end
// of the response: an error before the head is an error status, after it an
// abort (the client sees a truncated response, never a clean end).

import { GatewayError, clientContent, reasonPhrase } from '../../core/errors.js';
import type { RequestHead } from './http-head.js';
import type { HttpExchange } from '../types.js';

export abstract class ExchangeBase implements HttpExchange {
  aborted = false;
  responded = false;
  /** Set once the response is complete or the client went away. */
  onDone: (() => void) | undefined;
  /** The listener's count of exchanges in flight: called once, when the response is complete or the client went away. */
  onSettled: (() => void) | undefined;

  constructor(protected readonly head: RequestHead) {}

  get method(): string { return this.head.method; }
  get url(): string { return this.head.url; }
  get headers(): Record<string, string> { return this.head.headers; }
  get remoteAddress(): string { return this.head.remoteAddress; }
  abstract get headSent(): boolean;

  /** Engine: the status line and headers (framing headers are the engine's). */
  protected abstract sendHead(status: number, headers: Record<string, string | string[]>): void;
  /** Engine: one body chunk; false = backpressure. */
  protected abstract sendBody(chunk: Uint8Array): boolean;
  /** Engine: the last of the body; `close` asks to close the connection after it. */
  protected abstract sendEnd(body: string | Uint8Array | undefined, close: boolean): void;
  /** Engine: drop the connection (the response is cut short). */
  protected abstract destroy(): void;
  /** Engine: run several writes as one batch (uWS corks them). */
  protected batch(fn: () => void): void {
    fn();
  }

  writeHead(status: number, headers: Record<string, string | string[]>): void {
    if (this.headSent || this.aborted || this.responded) return;
    this.batch(() => this.sendHead(status, headers));
  }

  respond(status: number, headers: Record<string, string>, body: string | Uint8Array): void {
    if (this.responded || this.aborted) return;
    this.responded = true;
    this.batch(() => {
      if (!this.headSent) this.sendHead(status, headers);
      this.sendEnd(body, headers.connection === 'close');
    });
    this.done();
  }

  /** Write one body chunk of a streamed response; false = backpressure. */
  write(chunk: Uint8Array): boolean {
    if (this.responded || this.aborted) return true;
    let ok = true;
    this.batch(() => {
      if (!this.headSent) this.sendHead(200, {});
      ok = this.sendBody(chunk);
    });
    return ok;
  }

  finishResponse(): void {
    if (this.responded || this.aborted) return;
    this.responded = true;
    this.batch(() => {
      if (!this.headSent) this.sendHead(200, {});
      this.sendEnd(undefined, false);
    });
    this.done();
  }

  abort(): void {
    if (this.responded || this.aborted) return;
    this.responded = true;
    this.destroy();
    this.done();
  }

  done(): void {
    const d = this.onDone;
    this.onDone = undefined;
    d?.();
    this.settle();
  }

  settle(): void {
    const s = this.onSettled;
    this.onSettled = undefined;
    s?.();
  }

  /** The session closed the listener's channel: end the response accordingly. */
  close(err: Error | undefined): void {
    if (this.aborted || this.responded) return;
    if (err && !this.headSent) {
      const status = err instanceof GatewayError ? err.status : 502;
      this.respond(status, { 'content-type': 'application/json' }, JSON.stringify({ status, message: reasonPhrase(status), content: clientContent(err) }));
    } else if (err) {
      this.abort();
    } else {
      this.finishResponse();
    }
  }
}
