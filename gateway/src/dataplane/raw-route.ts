// Which sessions may take the raw stream path (fastpath/raw.ts): the same
// idea as the UDP offload's eligibility. The bytes must not be needed in user
// space (no ingress or egress stage: a transform reads every chunk), no
// stage may be relinked (retry_on disconnect/always reconnects an upstream
// through the JavaScript path), and the client's socket must still be raw.
// The stream clusters ask before they connect, so that an eligible session's
// upstream socket is made raw too.

import { isRawStream } from './capabilities.js';
import { retriesOnDisconnect } from './reconnect-budget.js';
import type { Session } from './session.js';

export function rawEligible(s: Session): boolean {
  return s.ingress.length === 0 && s.egress.length === 0 && !retriesOnDisconnect(s.retry) && isRawStream(s.source.channel);
}
