// The JSONSocket cluster: connects the transport's cluster, sends the request
// header made from the `header` recipe, and hands the channel to the session
// once a 2xx response header arrived (index.ts describes the protocol).

import type { Channel, ChannelSink } from '../../dataplane/channel.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type { Logger } from '../../observe/log.js';
import { compilePath, compileSetter, splitPath, type PathGetter, type PathSetter } from '../../routing/jsonpath.js';
import type { ClusterContext, ClusterImpl, ConnectRequest } from '../types.js';
import { isObject } from '../common/validate.js';
import { JSONSOCKET_VERSION, checkResponseHeader } from './header.js';

/** One step of the request header recipe. */
export type HeaderStep = (metadata: Record<string, unknown>, header: Record<string, unknown>, log: Logger, cluster: string) => void;

const ROOT = (path: string): boolean => splitPath(path).length === 0;

/** Compile the `header` recipe: `{path: {from, to}}`, `{path: "<from>"}`, `{set: {key, value}}`. */
export function compileHeaderRecipe(raw: unknown, field: string): HeaderStep[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw invalid(field, 'must be an array of {path: {from, to}}, {path: "<from>"} or {set: {key, value}} entries');
  return raw.map((e, i): HeaderStep => {
    const f = `${field}[${i}]`;
    if (!isObject(e) || (e.path === undefined) === (e.set === undefined)) {
      throw invalid(f, 'must be one of {path: {from, to}}, {path: "<from>"} or {set: {key, value}}');
    }
    if (e.path !== undefined) {
      let from: unknown;
      let to: unknown = '/';
      if (typeof e.path === 'string') {
        from = e.path;
      } else if (isObject(e.path)) {
        from = e.path.from;
        if (e.path.to !== undefined) to = e.path.to;
      } else {
        throw invalid(`${f}.path`, 'must be a metadata path or {from, to}');
      }
      if (typeof from !== 'string') throw invalid(`${f}.path.from`, 'is required: the metadata path to copy from');
      if (typeof to !== 'string') throw invalid(`${f}.path.to`, 'must be a header path');
      const get: PathGetter = compilePath(from);
      const set: PathSetter = compileSetter(to, `${f}.path.to`);
      const toRoot = ROOT(to);
      const src = from;
      return (metadata, header, log, cluster) => {
        const value = get(metadata);
        if (value === undefined) {
          log.info({ cluster, path: src }, 'JSONSocket header: metadata path not found, entry skipped');
          return;
        }
        if (toRoot && !isObject(value)) {
          log.info({ cluster, path: src }, 'JSONSocket header: a value copied to the header root must be an object, entry skipped');
          return;
        }
        set(header, value);
      };
    }
    const s = e.set;
    if (!isObject(s) || typeof s.key !== 'string' || !Object.hasOwn(s, 'value')) {
      throw invalid(`${f}.set`, 'must be {key: "<header path>", value: <any JSON value>}');
    }
    if (ROOT(s.key) && !isObject(s.value)) throw invalid(`${f}.set.value`, "must be an object when key is the header root '/'");
    const set = compileSetter(s.key, `${f}.set.key`);
    const value = s.value;
    return (_metadata, header) => set(header, value);
  });
}

export class JsonSocketCluster implements ClusterImpl {
  constructor(
    private readonly inner: ClusterImpl,
    private readonly recipe: HeaderStep[],
    private readonly ctx: ClusterContext,
  ) {}

  async connect(req: ConnectRequest): Promise<Channel> {
    const ch = await this.inner.connect(req);
    let header: Record<string, unknown>;
    try {
      header = {};
      for (const step of this.recipe) step(req.session.metadata, header, this.ctx.log, this.ctx.clusterName);
      header.JSONSocketVersion = JSONSOCKET_VERSION;
    } catch (err) {
      ch.close();
      throw new GatewayError('CONNECT_FAILED', `JSONSocket cluster "${this.ctx.clusterName}": cannot build the request header: ${(err as Error).message}`, undefined, { cause: err });
    }
    return clientHandshake(ch, header, req.timeoutMs);
  }

  close(): void {
    this.inner.close?.();
  }
}

/** Send the request header on `ch` and resolve with `ch` once a 2xx response header arrived. */
function clientHandshake(ch: Channel, header: Record<string, unknown>, timeoutMs: number): Promise<Channel> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (reason: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ch.setSink(undefined);
      ch.setCloseListener(undefined);
      if (reason === undefined) {
        resolve(ch);
        return;
      }
      ch.close();
      reject(new GatewayError('CONNECT_FAILED', `JSONSocket handshake with ${ch.peer} failed: ${reason}`));
    };
    const timer = setTimeout(() => settle(`no response header within ${timeoutMs} ms`), timeoutMs);
    const sink: ChannelSink = {
      data(chunk) {
        const check = checkResponseHeader(chunk);
        settle(check.ok ? undefined : check.reason);
      },
      end() {
        settle('the peer closed before answering');
      },
    };
    ch.setCloseListener({ closed: (_c, err) => settle(`the transport closed before a response header arrived${err ? ` (${err.message})` : ''}`) });
    ch.setSink(sink);
    ch.send(Buffer.from(JSON.stringify(header)));
  });
}
