// The SCTP-over-UDP echo peer (conformance/sctp_udp_echo.c, on usrsctp),
// compiled on first use into a folder of the caller's (process mode's run
// folder, a test's temporary folder). usrsctp is an SCTP stack independent of
// the gateway's (the `sctp` npm package), so the two must interoperate.
// Needs cc and libusrsctp-dev (scripts/setup-host.sh installs both).

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** conformance/sctp_udp_echo.c, next to this module's source (dist/conformance -> conformance). */
export const SCTP_UDP_ECHO_SRC = path.resolve(HERE, '../../conformance/sctp_udp_echo.c');

const built = new Map<string, string>();

/** The compiled peer in `dir` (built once per folder and process); throws with cc's message. */
export function sctpUdpEcho(dir: string): string {
  let bin = built.get(dir);
  if (bin === undefined) {
    bin = path.join(dir, 'sctp_udp_echo');
    try {
      execFileSync('cc', ['-O2', '-o', bin, SCTP_UDP_ECHO_SRC, '-lusrsctp', '-lpthread'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
      throw new Error(`cannot build ${SCTP_UDP_ECHO_SRC} (needs cc and libusrsctp-dev): ${stderr || (err as Error).message}`);
    }
    built.set(dir, bin);
  }
  return bin;
}

/** The peer's arguments: UDP encapsulation port and SCTP port are both `port`. */
export function sctpUdpEchoArgs(address: string, port: number, tag?: string): string[] {
  return ['-a', address, ...(tag !== undefined ? ['-t', tag] : []), String(port), String(port)];
}
