// What SCTP over UDP reads of a packet itself, before the `sctp` package
// sees it: the checksum, and whether it may open an association.

import { crc32cOf } from './package.js';

/** RFC 4960 appendix B CRC32c over a packet whose checksum field reads zero. */
export function checksumOk(packet: Buffer): boolean {
  const sent = packet.readUInt32LE(8);
  packet.writeUInt32LE(0, 8);
  const computed = crc32cOf(packet) >>> 0;
  packet.writeUInt32LE(sent, 8);
  return computed === sent;
}

/** SCTP common header (12 bytes) + one chunk header (4 bytes). */
export const MIN_PACKET = 16;
const CHUNK_INIT = 1;

/** Whether a packet opens an association: an INIT chunk, alone, with verification tag 0 (RFC 4960 8.5.1). */
export function isInit(packet: Buffer): boolean {
  return packet.byteLength >= MIN_PACKET && packet[12] === CHUNK_INIT && packet.readUInt32BE(4) === 0;
}
