// Small validators for protocol specs. Each throws a GatewayError that names
// the field and the reason, so a REST client knows exactly what to fix.

import { invalid } from '../../core/errors.js';
import { isIP } from 'node:net';
import type { Spec } from '../types.js';

export function optObject(spec: Spec, key: string, field: string): Spec | undefined {
  const v = spec[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`${field}.${key}`, 'must be an object');
  return v as Spec;
}

export function port(spec: Spec, key: string, field: string, required: boolean): number | undefined {
  const v = spec[key];
  if (v === undefined || v === null) {
    if (required) throw invalid(`${field}.${key}`, 'is required');
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) {
    throw invalid(`${field}.${key}`, `must be an integer port number 0..65535, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A host: an IP literal or a DNS name. */
export function host(spec: Spec, key: string, field: string, required: boolean): string | undefined {
  const v = spec[key];
  if (v === undefined || v === null) {
    if (required) throw invalid(`${field}.${key}`, 'is required');
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0 || v.length > 253) {
    throw invalid(`${field}.${key}`, 'must be an IP address or a host name');
  }
  if (isIP(v) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$/.test(v)) {
    throw invalid(`${field}.${key}`, `"${v}" is neither an IP address nor a host name`);
  }
  return v;
}

export function path(spec: Spec, key: string, field: string, required: boolean): string | undefined {
  const v = spec[key];
  if (v === undefined || v === null) {
    if (required) throw invalid(`${field}.${key}`, 'is required');
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0 || v.length > 107 || v.includes('\0')) {
    throw invalid(`${field}.${key}`, 'must be a socket file path of at most 107 bytes');
  }
  return v;
}

export function optString(spec: Spec, key: string, field: string): string | undefined {
  const v = spec[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${field}.${key}`, 'must be a string');
  return v;
}

export function optNumber(spec: Spec, key: string, field: string, min: number, max: number): number | undefined {
  const v = spec[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw invalid(`${field}.${key}`, `must be a number between ${min} and ${max}`);
  }
  return v;
}

export { isObject } from '../../core/is-object.js';
