// The gateway-wide message budget for connections on the `ws` library (the
// `ws` listener engine and the WebSocket cluster): what a connection's
// receiver holds of an unfinished message is reserved in the budget, read
// after every socket read. uWS connections reserve a whole message instead
// (listener.ts), since uWS does not show a partial one.

import type net from 'node:net';
import type { WebSocket } from 'ws';
import type { EdgeLimits } from '../../core/limits.js';
import type { Refusals } from '../../observe/refusals.js';

/** How long a connection refused for the message budget keeps its socket after the 1013 close frame. */
const REFUSED_GRACE_MS = 1000;

/** The parts of ws's Receiver (lib/receiver.js, ws 8) that hold an unfinished message. */
interface ReceiverState {
  /** Bytes read from the socket and not parsed into a complete frame yet. */
  _bufferedBytes?: number;
  /** Payload bytes of the fragments of the message in progress. */
  _messageLength?: number;
}

/**
 * Keep this connection's unfinished-message bytes reserved in the
 * gateway-wide budget; when they do not fit, close with 1013 (Try Again
 * Later) and stop reading. ws parses each socket read synchronously and our
 * listener runs after its own, so what the receiver still holds after a read
 * is exactly what waits for the rest of a message.
 */
export function watchUnfinished(ws: WebSocket, socket: net.Socket, limits: EdgeLimits, refusals: Refusals, where: string, remote: string): void {
  const receiver = (ws as unknown as { _receiver?: ReceiverState })._receiver;
  if (receiver === undefined) return;
  const budget = limits.messages;
  let held = 0;
  let refused = false;
  socket.on('data', () => {
    if (refused) return;
    const now = (receiver._bufferedBytes ?? 0) + (receiver._messageLength ?? 0);
    if (now <= held) {
      budget.release(held - now);
      held = now;
      return;
    }
    if (budget.reserve(now - held)) {
      held = now;
      return;
    }
    refused = true;
    refusals.refuse('message_buffer', where, { remote, unfinished: now, held: budget.used });
    // Stop reading (the paused socket also never sees the peer's EOF), send
    // the close frame, and drop the connection soon: its held bytes go with it.
    socket.pause();
    ws.close(1013, 'message buffer budget exhausted, try again later');
    setTimeout(() => ws.terminate(), REFUSED_GRACE_MS).unref();
  });
  // The socket's close, not ws's: ws waits for its receiver to finish first, which a paused socket delays.
  socket.once('close', () => {
    budget.release(held);
    held = 0;
    refused = true;
  });
}
