// Bounds on what one network client may make the gateway hold or compute:
// a JSONSocket header's size and nesting, the bytes of unfinished WebSocket
// messages and REST bodies held across ALL connections, and the size and
// alias count of a YAML REST body. Parsed once from `admin.limits` (static
// config only) by config/admin.ts; the README's "Limits" table lists them
// with their refusals.

export interface EdgeLimitSettings {
  /** Largest JSONSocket request header (one datagram), bytes. */
  jsonsocket_header_bytes: number;
  /** Deepest nesting of a JSONSocket request header (an object is depth 1). */
  jsonsocket_header_depth: number;
  /** Bytes of unfinished WebSocket messages and REST bodies held at once, all connections together. */
  message_buffer_bytes: number;
  /**
   * Largest YAML REST body, bytes. The yaml parser is far slower than
   * JSON.parse and its duplicate-key check is quadratic in the keys of one
   * mapping: measured on a loaded 2-core machine, a 16 KiB body parses in
   * 20-80 ms at worst (a flat mapping of 16 KiB of keys; 32 KiB: ~210 ms,
   * 64 KiB: ~1 s, 1 MiB: 2.5-10 s with every data plane stalled). A real
   * YAML REST body (a listener, a cluster, a small config) is 1-2 KiB;
   * larger configs go as JSON (max_body_bytes).
   */
  yaml_body_bytes: number;
  /** Aliases a YAML REST body may resolve (the yaml package's maxAliasCount). */
  yaml_aliases: number;
}

export const DEFAULT_EDGE_LIMITS: Readonly<EdgeLimitSettings> = {
  // A UDP datagram carries 64 KiB at most; a real header is a few hundred bytes.
  jsonsocket_header_bytes: 16 * 1024,
  jsonsocket_header_depth: 16,
  // 1024 WebSocket connections (uWS engine) at the listener's default 1 MiB message size; see MessageBudget.
  message_buffer_bytes: 1024 * 1024 * 1024,
  yaml_body_bytes: 16 * 1024,
  yaml_aliases: 100,
};

/**
 * One budget for the message bytes the gateway holds for clients across all
 * connections: unfinished WebSocket messages and REST request bodies. Each
 * holder reserves before it buffers and releases when the message is done or
 * the connection is gone; a reservation that does not fit is refused, and the
 * holder turns its client away with the error its protocol carries.
 */
export class MessageBudget {
  private held = 0;

  constructor(private readonly limit: () => number) {}

  /** Reserve n bytes; false when they do not fit (nothing is reserved then). */
  reserve(n: number): boolean {
    if (n <= 0) return true;
    if (this.held + n > this.limit()) return false;
    this.held += n;
    return true;
  }

  release(n: number): void {
    if (n <= 0) return;
    this.held = Math.max(0, this.held - n);
  }

  get used(): number {
    return this.held;
  }
}

/** What listeners and clusters see of the limits: the settings and the shared budget. */
export interface EdgeLimits {
  readonly settings: EdgeLimitSettings;
  readonly messages: MessageBudget;
}

export function edgeLimits(settings: EdgeLimitSettings = { ...DEFAULT_EDGE_LIMITS }): { settings: EdgeLimitSettings; messages: MessageBudget } {
  const holder = { settings, messages: undefined as unknown as MessageBudget };
  holder.messages = new MessageBudget(() => holder.settings.message_buffer_bytes);
  return holder;
}
