// One error table for the whole gateway. Every error that can reach a REST
// client or a log carries a stable code; the HTTP status follows from it.

export type ErrorCode =
  | 'INVALID_INPUT'      // 400: the request or config is malformed; `field` says where
  | 'NOT_FOUND'          // 404: an object named in the request does not exist
  | 'NAME_TAKEN'         // 409: an object of that name exists already
  | 'IN_USE'             // 409: the object is still referenced or bound
  | 'BODY_TOO_LARGE'     // 413
  | 'UNSUPPORTED_MEDIA'  // 415
  | 'NOT_SUPPORTED'      // 400: a recognised protocol or feature that is not available (yet)
  | 'FORBIDDEN'          // 403: allowed only from the static config
  | 'UNAUTHORIZED'       // 401: the controller requires a bearer token (missing or wrong)
  | 'RATE_LIMITED'       // 429: too many REST requests from one client; see Retry-After
  | 'NO_ROUTE'           // 404: no rule matched a session
  | 'CONNECT_FAILED'     // 502: an upstream could not be reached
  | 'UNAVAILABLE'        // 503: a shared budget is exhausted right now, or the session was cut (draining, stopping, object deleted)
  | 'TIMEOUT'            // 504
  | 'BIND_FAILED'        // 409: a listener's address is in use or cannot be bound
  | 'INTERNAL';          // 500: a bug

const STATUS: Record<ErrorCode, number> = {
  INVALID_INPUT: 400,
  NOT_FOUND: 404,
  NAME_TAKEN: 409,
  IN_USE: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA: 415,
  NOT_SUPPORTED: 400,
  FORBIDDEN: 403,
  UNAUTHORIZED: 401,
  RATE_LIMITED: 429,
  NO_ROUTE: 404,
  CONNECT_FAILED: 502,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
  BIND_FAILED: 409,
  INTERNAL: 500,
};

/**
 * Reason phrases (RFC 9110 section 15) for every status the gateway writes or
 * passes on from an upstream. Every status line the gateway writes takes its
 * phrase from here (reasonPhrase); an unknown code gets an empty phrase, which
 * HTTP/1.1 allows, never a wrong one.
 */
const REASON: Record<number, string> = {
  100: 'Continue', 101: 'Switching Protocols', 103: 'Early Hints',
  200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information', 204: 'No Content',
  205: 'Reset Content', 206: 'Partial Content', 207: 'Multi-Status',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified',
  307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 407: 'Proxy Authentication Required', 408: 'Request Timeout',
  409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Payload Too Large',
  414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 417: 'Expectation Failed',
  421: 'Misdirected Request', 422: 'Unprocessable Content', 425: 'Too Early', 426: 'Upgrade Required',
  428: 'Precondition Required', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  451: 'Unavailable For Legal Reasons',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout', 505: 'HTTP Version Not Supported', 507: 'Insufficient Storage', 511: 'Network Authentication Required',
};

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** JSON-pointer-like location of the offending input, e.g. `listener.spec.port`. */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, field?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatewayError';
    this.code = code;
    this.status = STATUS[code];
    this.field = field;
  }

  /** The l7mp error body shape: {status, message, content}, plus our stable code and field. */
  toBody(): { status: number; message: string; content: string; code: ErrorCode; field?: string } {
    const body: { status: number; message: string; content: string; code: ErrorCode; field?: string } = {
      status: this.status,
      message: REASON[this.status] ?? 'Error',
      content: this.message,
      code: this.code,
    };
    if (this.field !== undefined) body.field = this.field;
    return body;
  }
}

export function invalid(field: string, reason: string): GatewayError {
  return new GatewayError('INVALID_INPUT', `${field}: ${reason}`, field);
}

export function notFound(kind: string, name: string): GatewayError {
  return new GatewayError('NOT_FOUND', `Unknown ${kind} "${name}"`);
}

/**
 * What a data-plane client is told about a 5xx: the upstream's address,
 * port and errno are for the gateway's log (which has them, once per
 * session), never for the client.
 */
const CLIENT_5XX: Partial<Record<ErrorCode, string>> = {
  CONNECT_FAILED: 'could not connect to the upstream',
  TIMEOUT: 'the upstream did not answer in time',
  UNAVAILABLE: 'the service is unavailable right now; retry later',
};

/** The error text a data-plane client may see: the message for 4xx, a generic sentence for 5xx. */
export function clientContent(err: Error, context = ''): string {
  const e = err instanceof GatewayError ? err : undefined;
  if (e !== undefined && e.status < 500) return e.message;
  const what = (e && CLIENT_5XX[e.code]) ?? 'the upstream failed';
  return `${context}${what} (details in the gateway log)`;
}

export function reasonPhrase(status: number): string {
  return REASON[status] ?? '';
}

/** Wrap anything thrown into a GatewayError; unknown errors are bugs (500). */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new GatewayError('INTERNAL', msg, undefined, { cause: err });
}
