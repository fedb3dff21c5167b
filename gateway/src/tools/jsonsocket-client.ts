// A JSONSocket v1 client over UDP: a small library and a command-line tool.
//
// Library:
//   const c = await JSONSocketClient.connect({ host, port, header: { tenant: 'a' } });
//   c.onMessage((msg) => ...); c.send('hello'); await c.close();
//
// CLI (when this module is the entry point):
//   node dist/gateway/src/tools/jsonsocket-client.js HOST PORT [--header JSON] [--timeout MS]
//        [--local-port N] [--linger MS]
// does the handshake, then sends each stdin line as one datagram and prints
// each received datagram as one stdout line. A refused handshake exits 1 with
// the server's status and message on stderr.
//
// The response checks (checkResponseHeader, protocols/jsonsocket/header.ts)
// are the spec's client rules, and the gateway's JSONSocket cluster uses the
// same function, so the two clients agree on what a valid answer is.

import dgram from 'node:dgram';
import fs from 'node:fs';
import { isIPv6 } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';
import { JSONSOCKET_VERSION, checkResponseHeader, type ResponseCheck } from '../protocols/jsonsocket/header.js';
import { isObject } from '../protocols/common/validate.js';

export { JSONSOCKET_VERSION, checkResponseHeader, type ResponseCheck };

/** Default wait for the server's response header. */
export const DEFAULT_CLIENT_TIMEOUT_MS = 2000;
/** Datagrams that arrive before onMessage() is called are kept, up to this many. */
const MAX_EARLY_MESSAGES = 256;

export type JSONSocketErrorCode =
  | 'TIMEOUT'       // no response header in time
  | 'BAD_RESPONSE'  // the answer is not a JSON object or lacks a numeric JSONSocketStatus
  | 'REJECTED'      // the server answered a non-2xx status
  | 'SOCKET';       // the socket failed (e.g. ICMP port unreachable: nobody listens)

export class JSONSocketError extends Error {
  constructor(
    readonly code: JSONSocketErrorCode,
    message: string,
    /** The server's JSONSocketStatus, when it sent one. */
    readonly status?: number,
    /** The server's response header, when it was a JSON object. */
    readonly response?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'JSONSocketError';
  }
}

export interface JSONSocketClientOptions {
  host: string;
  port: number;
  /** Request header fields. JSONSocketVersion defaults to 1 (set it only to test servers). */
  header?: Record<string, unknown>;
  /** Wait for the response header this long (default 2000 ms). */
  timeoutMs?: number;
  /** Local port to bind (default: an ephemeral one). */
  localPort?: number;
  /** Local address to bind (default: all interfaces). */
  localAddress?: string;
}

type MessageCallback = (msg: Buffer) => void;
type CloseCallback = (err?: Error) => void;

export class JSONSocketClient {
  private messageCb: MessageCallback | undefined;
  private early: Buffer[] | undefined = [];
  private closeCb: CloseCallback | undefined;
  private closedErr: Error | undefined;
  private isClosed = false;

  private constructor(
    private readonly socket: dgram.Socket,
    /** The server's response header (status 2xx). */
    readonly response: Readonly<Record<string, unknown>>,
  ) {
    socket.on('message', (msg) => {
      if (this.messageCb) this.messageCb(msg);
      else if (this.early && this.early.length < MAX_EARLY_MESSAGES) this.early.push(msg);
    });
    socket.on('error', (err) => {
      this.closedErr ??= err;
      this.close();
    });
    socket.on('close', () => {
      this.isClosed = true;
      this.closeCb?.(this.closedErr);
      this.closeCb = undefined;
    });
  }

  /** Open a socket, send the request header and wait for a 2xx response. */
  static async connect(opts: JSONSocketClientOptions): Promise<JSONSocketClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;
    const socket = dgram.createSocket(isIPv6(opts.host) || (opts.localAddress !== undefined && isIPv6(opts.localAddress)) ? 'udp6' : 'udp4');
    const closeQuietly = () => { try { socket.close(); } catch { /* already closed */ } };
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ port: opts.localPort ?? 0, address: opts.localAddress }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.connect(opts.port, opts.host, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      closeQuietly();
      throw new JSONSocketError('SOCKET', `cannot open a UDP socket to ${opts.host}:${opts.port}: ${(err as Error).message}`, undefined, undefined, { cause: err });
    }
    const header = { JSONSocketVersion: JSONSOCKET_VERSION, ...(opts.header ?? {}) };
    let check: ResponseCheck;
    try {
      const answer = await new Promise<Buffer>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          socket.off('message', onMessage);
          socket.off('error', onError);
        };
        const onMessage = (msg: Buffer) => { done(); resolve(msg); };
        const onError = (err: Error) => {
          done();
          reject(new JSONSocketError('SOCKET', `JSONSocket handshake with ${opts.host}:${opts.port} failed: ${err.message}`, undefined, undefined, { cause: err }));
        };
        const timer = setTimeout(() => {
          done();
          reject(new JSONSocketError('TIMEOUT', `no JSONSocket response header from ${opts.host}:${opts.port} within ${timeoutMs} ms`));
        }, timeoutMs);
        socket.once('message', onMessage);
        socket.once('error', onError);
        socket.send(JSON.stringify(header));
      });
      check = checkResponseHeader(answer);
    } catch (err) {
      closeQuietly();
      throw err;
    }
    if (!check.ok) {
      closeQuietly();
      throw new JSONSocketError(check.code, `JSONSocket handshake with ${opts.host}:${opts.port} failed: ${check.reason}`, check.status, check.header);
    }
    return new JSONSocketClient(socket, check.header);
  }

  /** The local UDP port (what the server sees as the source port). */
  get localPort(): number {
    return this.socket.address().port;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Send one datagram (a string is sent as UTF-8). */
  send(buf: Uint8Array | string): void {
    if (this.isClosed) throw new JSONSocketError('SOCKET', 'the JSONSocket client is closed');
    this.socket.send(buf);
  }

  /** Receive every datagram after the handshake; the ones that arrived earlier are delivered first. */
  onMessage(cb: MessageCallback): void {
    this.messageCb = cb;
    const early = this.early;
    this.early = undefined;
    if (early) for (const m of early) cb(m);
  }

  /** Told once when the socket closes; with an error when it failed (e.g. nobody listens any more). */
  onClose(cb: CloseCallback): void {
    if (this.isClosed) cb(this.closedErr);
    else this.closeCb = cb;
  }

  /** Close the socket. No message is sent: JSONSocket has no close handshake. */
  close(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      try { this.socket.close(); } catch { resolve(); }
    });
  }
}

// ------------------------------------------------------------------ CLI

const USAGE = 'usage: jsonsocket-client HOST PORT [--header JSON] [--timeout MS] [--local-port N] [--linger MS]\n' +
  '  Handshake with a JSONSocket server over UDP, then send each stdin line as one datagram\n' +
  '  and print each received datagram as one line. After stdin ends, wait until no datagram\n' +
  '  arrived for --linger MS (default 1000) and exit.\n';

interface CliArgs {
  host: string;
  port: number;
  header: Record<string, unknown>;
  timeoutMs: number;
  localPort: number | undefined;
  lingerMs: number;
}

function parseCliArgs(argv: string[]): CliArgs {
  const positional: string[] = [];
  const opts = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') throw new UsageError('');
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const [key, value] = eq > 0 ? [a.slice(2, eq), a.slice(eq + 1)] : [a.slice(2), argv[++i]];
      if (!['header', 'timeout', 'local-port', 'linger'].includes(key)) throw new UsageError(`unknown option --${key}`);
      if (value === undefined) throw new UsageError(`--${key} needs a value`);
      opts.set(key, value);
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) throw new UsageError('HOST and PORT are required');
  const int = (s: string, what: string, min: number, max: number): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${what} must be an integer between ${min} and ${max}, got "${s}"`);
    return n;
  };
  let header: Record<string, unknown> = {};
  const h = opts.get('header');
  if (h !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(h);
    } catch (err) {
      throw new UsageError(`--header is not valid JSON: ${(err as Error).message}`);
    }
    if (!isObject(parsed)) throw new UsageError('--header must be a JSON object');
    header = parsed;
  }
  const lp = opts.get('local-port');
  return {
    host: positional[0]!,
    port: int(positional[1]!, 'PORT', 1, 65535),
    header,
    timeoutMs: int(opts.get('timeout') ?? String(DEFAULT_CLIENT_TIMEOUT_MS), '--timeout', 1, 3_600_000),
    localPort: lp !== undefined ? int(lp, '--local-port', 0, 65535) : undefined,
    lingerMs: int(opts.get('linger') ?? '1000', '--linger', 0, 3_600_000),
  };
}

class UsageError extends Error {}

async function runCli(argv: string[]): Promise<number> {
  let args: CliArgs;
  try {
    args = parseCliArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) process.stderr.write(`jsonsocket-client: ${err.message}\n`);
    process.stderr.write(USAGE);
    return err.message ? 2 : 0;
  }
  let client: JSONSocketClient;
  try {
    client = await JSONSocketClient.connect(args);
  } catch (err) {
    if (err instanceof JSONSocketError) {
      const status = err.status !== undefined ? `status ${err.status}` : err.code;
      const msg = typeof err.response?.JSONSocketMessage === 'string' ? err.response.JSONSocketMessage : err.message;
      process.stderr.write(`jsonsocket-client: handshake failed: ${status}: ${msg}\n`);
      return 1;
    }
    throw err;
  }
  process.stderr.write(`jsonsocket-client: connected: ${JSON.stringify(client.response)}\n`);
  return new Promise<number>((resolve) => {
    let linger: NodeJS.Timeout | undefined;
    let inputEnded = false;
    let finished = false;
    const finish = (code: number) => {
      if (finished) return;
      finished = true;
      if (linger) clearTimeout(linger);
      rl.close();
      process.stdin.destroy();
      void client.close().then(() => resolve(code));
    };
    const armLinger = () => {
      if (linger) clearTimeout(linger);
      linger = setTimeout(() => finish(0), args.lingerMs);
    };
    client.onMessage((msg) => {
      process.stdout.write(msg);
      process.stdout.write('\n');
      if (inputEnded) armLinger();
    });
    client.onClose((err) => {
      if (err) process.stderr.write(`jsonsocket-client: ${err.message}\n`);
      finish(err ? 1 : 0);
    });
    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    rl.on('line', (line) => { if (!client.closed) client.send(line); });
    rl.on('close', () => {
      if (finished) return;
      inputEnded = true;
      armLinger();
    });
  });
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(path.resolve(script))).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  runCli(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err) => {
      process.stderr.write(`jsonsocket-client: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
