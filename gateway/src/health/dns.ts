// DNS re-resolution of endpoints given by name. l7mp resolved a name (if at
// all) once; here a name is resolved when the endpoint is added and again on
// its TTL (with `dns.servers`, whose answers carry TTLs) or every
// `dns.interval` (the system resolver, getaddrinfo, which does not tell the
// TTL), whichever comes first. Every address of the answer is used, in turn,
// one per connection. A failed resolution keeps the last good answer and is
// logged once per failure streak; until a first answer the name itself goes
// to the cluster's connect, which resolves it.
//
// Opt-in, with a cluster `dns` section: only then are endpoints of clusters
// with a numeric `spec.port` whose address is a host name (not an IP
// literal, not a socket path) resolved here. The connection then goes to an
// IP, so an HTTP Host header, a WebSocket URL or a TLS server name carries
// the IP. That is why it is opt-in: without `dns` the cluster's own connect
// resolves the name, and the name is what those carry.

import dns from 'node:dns';
import { isIP } from 'node:net';
import { invalid } from '../core/errors.js';
import type { Logger } from '../observe/log.js';

export interface DnsSettings {
  /** Resolver addresses ("127.0.0.1:5353"); undefined: the system resolver. */
  readonly servers: readonly string[] | undefined;
  /** Longest time between resolutions, ms. */
  readonly interval: number;
}

export const DNS_DEFAULTS = { interval: 30_000 };
/** Shortest time between resolutions of one name (a TTL of 0 must not spin). */
const MIN_REFRESH = 1000;
const MAX_SERVERS = 8;
const MAX_ADDRESSES = 64;
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$/;

export function parseDns(raw: unknown, field: string): DnsSettings {
  if (raw === undefined || raw === null) return { servers: undefined, interval: DNS_DEFAULTS.interval };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid(field, 'must be an object {servers, interval}');
  const r = raw as Record<string, unknown>;
  const interval = r.interval ?? DNS_DEFAULTS.interval;
  if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 100 || interval > 86_400_000) {
    throw invalid(`${field}.interval`, 'must be an integer between 100 and 86400000 (ms)');
  }
  let servers: string[] | undefined;
  if (r.servers !== undefined && r.servers !== null) {
    if (!Array.isArray(r.servers) || r.servers.length === 0 || r.servers.length > MAX_SERVERS) {
      throw invalid(`${field}.servers`, `must list 1 to ${MAX_SERVERS} resolver addresses`);
    }
    servers = r.servers.map((s, i) => {
      if (typeof s !== 'string') throw invalid(`${field}.servers[${i}]`, 'must be a string like "10.0.0.10" or "127.0.0.1:5353"');
      try {
        new dns.Resolver().setServers([s]);
      } catch {
        throw invalid(`${field}.servers[${i}]`, `"${s}" is not a resolver address (IP, IP:port or [IPv6]:port)`);
      }
      return s;
    });
  }
  return { servers, interval };
}

/** Whether an endpoint address is a name to resolve. */
export function isHostName(address: string): boolean {
  return isIP(address) === 0 && !address.includes('/') && HOST_NAME.test(address) && address !== 'localhost';
}

interface Answer {
  addresses: string[];
  /** Seconds, when the resolver told it. */
  ttl: number | undefined;
}

function resolveWith(resolver: dns.promises.Resolver | undefined, name: string): Promise<Answer> {
  if (resolver === undefined) {
    return dns.promises.lookup(name, { all: true }).then((r) => ({ addresses: r.map((a) => a.address), ttl: undefined }));
  }
  const v4 = resolver.resolve4(name, { ttl: true }).catch(() => [] as dns.RecordWithTtl[]);
  const v6 = resolver.resolve6(name, { ttl: true }).catch(() => [] as dns.RecordWithTtl[]);
  return Promise.all([v4, v6]).then(([a, b]) => {
    const all = [...a, ...b];
    if (all.length === 0) throw new Error(`no A or AAAA record for ${name}`);
    return { addresses: all.map((x) => x.address), ttl: Math.min(...all.map((x) => x.ttl)) };
  });
}

/** One endpoint name, kept resolved. */
export class NameResolver {
  private addresses: string[] = [];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly endpoint: string,
    private readonly cluster: string,
    private readonly settings: DnsSettings,
    private readonly resolver: dns.promises.Resolver | undefined,
    private readonly log: Logger,
  ) {
    this.refresh();
  }

  /** The address for the next connection (round robin), or the name before any answer. */
  address(): string {
    const a = this.addresses;
    if (a.length === 0) return this.name;
    const i = this.next++ % a.length;
    if (this.next >= a.length) this.next = 0;
    return a[i]!;
  }

  /** The current answer (for dumps). */
  current(): readonly string[] {
    return this.addresses;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private refresh(): void {
    resolveWith(this.resolver, this.name).then((ans) => {
      if (this.closed) return;
      const addresses = [...new Set(ans.addresses)].slice(0, MAX_ADDRESSES);
      const changed = addresses.join(',') !== this.addresses.join(',');
      if (changed || this.failing) {
        this.log.info({ cluster: this.cluster, endpoint: this.endpoint, name: this.name, addresses, ttl: ans.ttl }, 'endpoint name resolved');
      }
      this.failing = false;
      this.addresses = addresses;
      const ttlMs = ans.ttl === undefined ? this.settings.interval : ans.ttl * 1000;
      this.schedule(Math.min(this.settings.interval, Math.max(MIN_REFRESH, ttlMs)));
    }, (err: unknown) => {
      if (this.closed) return;
      if (!this.failing) {
        this.failing = true;
        this.log.warn({ cluster: this.cluster, endpoint: this.endpoint, name: this.name, kept: this.addresses, err: (err as Error).message },
          'endpoint name did not resolve; keeping the last good answer');
      }
      this.schedule(Math.min(this.settings.interval, MIN_REFRESH * 5));
    });
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.refresh(), ms);
    this.timer.unref();
  }
}

/** The resolver for a cluster's settings: c-ares with the given servers, or undefined for getaddrinfo. */
export function resolverFor(settings: DnsSettings): dns.promises.Resolver | undefined {
  if (settings.servers === undefined) return undefined;
  const r = new dns.promises.Resolver({ timeout: 1000, tries: 2 });
  r.setServers([...settings.servers]);
  return r;
}
