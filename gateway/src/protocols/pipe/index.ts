// PIPE: named pipes (FIFOs) as a byte stream.
//
// A FIFO carries one direction, so a PIPE object names up to two:
// - listener: `filename` is the FIFO the gateway reads (peers write into it);
//   `reply_filename`, if set, the FIFO the gateway writes the answers to.
//   The listener creates missing FIFOs (mode 0600; mkfifo needs the native
//   addon). One session per writer: it starts with the first bytes and ends
//   when every writer has closed the FIFO (EOF); the listener then opens the
//   FIFO again for the next writer. Writers that overlap share a session,
//   as they share the FIFO.
// - cluster: each endpoint `address` is a FIFO the gateway writes into (it
//   must exist and have a reader, else the connect fails and may be retried);
//   with `reply_suffix` (e.g. ".reply") the gateway reads the answers from
//   the FIFO at address + suffix.
//
// Node can drive a FIFO fd as a pipe handle (new net.Socket({fd})), so the
// data path is libuv's; only mkfifo() comes from the addon (fifo.ts). This
// file holds the declaration and spec parsing; listener.ts and cluster.ts
// the two sides.

import { invalid } from '../../core/errors.js';
import type { ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';
import { PipeCluster } from './cluster.js';
import { PipeListener } from './listener.js';

function fifoPath(spec: Spec, key: string, field: string, required: boolean): string | undefined {
  const p = v.optString(spec, key, field);
  if (p === undefined) {
    if (required) throw invalid(`${field}.${key}`, 'is required');
    return undefined;
  }
  if (p === '' || p.includes('\0') || p.length > 4095) {
    throw invalid(`${field}.${key}`, 'must be a FIFO path');
  }
  return p;
}

export const pipeProtocol: ProtocolDef = {
  name: 'PIPE',
  kind: 'byte',
  summary: 'named pipes (FIFOs); one session per writer; an optional second FIFO carries the answers',
  // An endpoint's reply FIFO is its address plus reply_suffix (no "/"): the same directory.
  files: { listener: [{ key: 'filename' }, { key: 'reply_filename' }], endpoint: [{ key: 'address' }] },
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      return new PipeListener(fifoPath(spec, 'filename', field, true)!, fifoPath(spec, 'reply_filename', field, false), ctx);
    },
  },
  cluster: {
    virtual: false,
    workers: 'one',
    retriable: true,
    create(spec, ctx, field) {
      const suffix = v.optString(spec, 'reply_suffix', field);
      if (suffix !== undefined && (suffix === '' || suffix.includes('/') || suffix.includes('\0'))) {
        throw invalid(`${field}.reply_suffix`, 'must be a non-empty file name suffix');
      }
      return new PipeCluster(suffix, ctx.clusterName);
    },
    checkEndpoint(spec, field) {
      fifoPath(spec, 'address', field, true);
    },
  },
};
