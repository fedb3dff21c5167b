// TLS settings of a uWebSockets.js server listener (`spec.tls`):
//
//   tls: { cert_file: /etc/l7mp/tls.crt, key_file: /etc/l7mp/tls.key, passphrase: "..." }
//
// Paths only, never PEM text inline: the config dump and the REST API then
// carry no key material (the passphrase is redacted in dumps). l7mp had no TLS
// for its listeners; these names follow uWS's own key_file_name/cert_file_name.
//
// Everything is checked when the listener is added, so a REST call gets a 400
// that names the field instead of a listener that fails later: the files must
// be readable, the certificate and key must parse (with the passphrase), and
// the key must belong to the certificate. The files are read once, there: the
// listener's App is made from those checked bytes (withCheckedPem), never
// from what the paths hold by the time uWS opens them.

import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GatewayError, invalid } from '../../core/errors.js';
import type { FileKey, ProtocolDef, Spec } from '../types.js';

export interface TlsFiles {
  /** Absolute paths, as configured. */
  readonly cert_file: string;
  readonly key_file: string;
  readonly passphrase?: string;
  /** The files' bytes as checked when the listener was added: what its App serves. */
  readonly cert: Buffer;
  readonly key: Buffer;
}

const KEYS = new Set(['cert_file', 'key_file', 'passphrase']);
/** The files a listener with `spec.tls` reads: its protocol's `files.listener` (REST confinement, core/confine.ts). */
export const TLS_FILE_KEYS: readonly FileKey[] = [{ key: 'tls.cert_file' }, { key: 'tls.key_file' }];
export const REDACTED = '<redacted>';

/** A certificate chain or key is a few KiB; a larger file is not one, and is not read into memory. */
export const MAX_PEM_BYTES = 1 << 20;

/**
 * A PEM file's bytes. Opened non-blocking and checked on the open descriptor:
 * a path swapped for a FIFO after a check by name would block the event loop
 * in the read, and a huge file would be read whole.
 */
function readPem(file: string): Buffer {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_PEM_BYTES) throw new Error(`${st.size} bytes, more than a PEM file's ${MAX_PEM_BYTES}`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break; // truncated meanwhile
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    fs.closeSync(fd);
  }
}

function readFile(tls: Spec, key: 'cert_file' | 'key_file', field: string): { file: string; pem: Buffer } {
  const v = tls[key];
  const f = `${field}.${key}`;
  if (v === undefined || v === null) throw invalid(f, 'is required: the path of a PEM file');
  if (typeof v !== 'string' || v === '' || v.includes('\0')) throw invalid(f, 'must be a file path');
  const file = path.resolve(v);
  let pem: Buffer;
  try {
    pem = readPem(file);
  } catch (err) {
    throw invalid(f, `cannot read "${v}": ${(err as Error).message}`);
  }
  return { file, pem };
}

/**
 * A spec that asks for TLS from a protocol that does not speak it is
 * refused: left unread, `tls` would put the listener or the upstream
 * connection in the clear while its user believes it encrypted.
 */
export function refuseUnservedTls(p: ProtocolDef, spec: Spec, field: string, role: 'listener' | 'cluster' = 'listener'): void {
  if (spec.tls === undefined || spec.tls === null) return;
  if (role === 'listener' && p.listener?.tls === true) return;
  // No cluster connects with TLS; `tls: false` says so and is accepted.
  if (role === 'cluster') {
    if (spec.tls === false) return;
    throw new GatewayError('NOT_SUPPORTED', `${field}.tls: ${p.name} clusters do not connect with TLS yet`, `${field}.tls`);
  }
  throw new GatewayError('NOT_SUPPORTED', `${field}.tls: ${p.name} listeners do not serve TLS (the README's protocol table says which do)`, `${field}.tls`);
}

/** Parse and check `spec.tls`; undefined when the listener is plain text. */
export function parseTls(spec: Spec, field: string): TlsFiles | undefined {
  const raw = spec.tls;
  if (raw === undefined || raw === null) return undefined;
  const tf = `${field}.tls`;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid(tf, 'must be an object {cert_file, key_file, passphrase?}');
  const tls = raw as Spec;
  for (const k of Object.keys(tls)) {
    if (!KEYS.has(k)) throw invalid(`${tf}.${k}`, 'unknown setting; use cert_file and key_file (paths of PEM files) and passphrase');
  }
  const passphrase = tls.passphrase;
  if (passphrase !== undefined && typeof passphrase !== 'string') throw invalid(`${tf}.passphrase`, 'must be a string');
  const cert = readFile(tls, 'cert_file', tf);
  const key = readFile(tls, 'key_file', tf);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert.pem);
  } catch (err) {
    throw invalid(`${tf}.cert_file`, `is not a PEM certificate: ${(err as Error).message}`);
  }
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(key.pem.toString('latin1'));
  if (encrypted && passphrase === undefined) throw invalid(`${tf}.key_file`, 'is encrypted: set tls.passphrase');
  let privateKey;
  try {
    privateKey = createPrivateKey(passphrase !== undefined ? { key: key.pem, passphrase } : { key: key.pem });
  } catch (err) {
    throw invalid(`${tf}.key_file`, encrypted ? 'cannot be decrypted with tls.passphrase' : `is not a PEM private key: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw invalid(`${tf}.key_file`, 'does not match the certificate in cert_file');
  return { cert_file: cert.file, key_file: key.file, ...(passphrase !== undefined ? { passphrase } : {}), cert: cert.pem, key: key.pem };
}

/**
 * What an App made from these settings serves: a digest of the paths, the
 * checked bytes and the passphrase (uws-pool.ts keys reused TLS Apps by it).
 */
export function tlsAppKey(t: TlsFiles): string {
  const h = createHash('sha256');
  for (const [f, pem] of [[t.cert_file, t.cert], [t.key_file, t.key]] as const) h.update(`${f}\0${pem.length}\0`).update(pem);
  h.update(t.passphrase === undefined ? '\0' : `\x01${t.passphrase}`);
  return `tls:${h.digest('base64')}`;
}

/** open(2)'s O_TMPFILE, which includes O_DIRECTORY: an unnamed file on the directory's filesystem. */
const O_TMPFILE = 0o20000000 | fs.constants.O_DIRECTORY;
/** Where the unnamed files go: tmpfs first, so that key bytes never reach a disk. */
const UNNAMED_DIRS = ['/dev/shm', os.tmpdir()];

/** An unnamed file holding `bytes` (mode 0600), or undefined where no directory allows one. */
function unnamedFile(bytes: Buffer): number | undefined {
  for (const dir of UNNAMED_DIRS) {
    let fd: number;
    try {
      fd = fs.openSync(dir, O_TMPFILE | fs.constants.O_RDWR, 0o600);
    } catch {
      continue; // no O_TMPFILE on this filesystem or kernel, or no such directory
    }
    try {
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, off);
      return fd;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }
  return undefined;
}

/**
 * Call `use` with file names that read exactly the bytes checked in `t`.
 * uWS takes only file names and opens them itself, later: by then a path
 * may hold other bytes (a certificate rotated after the check, a key that no
 * longer matches) or a FIFO that blocks the open. So each PEM goes into an
 * unnamed file, named through /proc/self/fd, closed (and gone) when `use`
 * returns. `exact` false: no directory allowed an unnamed file (a kernel or
 * filesystem without O_TMPFILE, no /proc), and `use` got the configured
 * paths, which uWS reads again.
 */
export function withCheckedPem<R>(t: TlsFiles, use: (cert: string, key: string, exact: boolean) => R): R {
  const fds: number[] = [];
  try {
    for (const pem of [t.cert, t.key]) {
      const fd = unnamedFile(pem);
      if (fd === undefined) break;
      fds.push(fd);
    }
    const named = fds.length === 2 && fs.existsSync(`/proc/self/fd/${fds[0]}`);
    return named ? use(`/proc/self/fd/${fds[0]}`, `/proc/self/fd/${fds[1]}`, true) : use(t.cert_file, t.key_file, false);
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

/** A copy of a listener spec fit for dumps: the TLS passphrase replaced. */
export function redactSpec(spec: Spec): Spec {
  const tls = spec.tls;
  if (typeof tls !== 'object' || tls === null || (tls as Spec).passphrase === undefined) return spec;
  return { ...spec, tls: { ...(tls as Spec), passphrase: REDACTED } };
}
