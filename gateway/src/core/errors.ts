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
  | 'TIMEOUT'            // 504
  | 'BIND_FAILED'        // 409: a listener's address is in use or cannot be bound
  | 'UNAVAILABLE'        // 503: the session was cut (gateway draining or stopping, object deleted)
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
  TIMEOUT: 504,
  BIND_FAILED: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

const REASON: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
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

export function reasonPhrase(status: number): string {
  return REASON[status] ?? 'Error';
}

/** Wrap anything thrown into a GatewayError; unknown errors are bugs (500). */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new GatewayError('INTERNAL', msg, undefined, { cause: err });
}
