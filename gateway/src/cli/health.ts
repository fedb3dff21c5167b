// `l7mp health`: asks a running gateway's /ready on its admin listener and
// turns the answer into an exit code, for container health checks (the image
// has no shell and no curl: HEALTHCHECK runs this with the image's node).
// It loads nothing of the gateway, so a check costs one node start.

export const HEALTH_URL_ENV = 'L7MP_HEALTH_URL';
/** /ready of the admin listener's defaults (ADMIN_DEFAULTS in observe/probe-listener.ts). */
export const DEFAULT_HEALTH_URL = 'http://127.0.0.1:8080/ready';
const TIMEOUT_MS = 3000;
/** /ready answers a few hundred bytes; never print more than this of a stranger's answer. */
const MAX_SHOWN = 1024;

export function healthUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? (env[HEALTH_URL_ENV] || DEFAULT_HEALTH_URL);
}

/** 0 when GET url answers 200, else 1; one line on stdout/stderr says why. */
export async function checkHealth(url: string): Promise<number> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'error' });
  } catch (err) {
    const e = err as Error & { cause?: Error };
    process.stderr.write(`l7mp health: ${url}: ${e.name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS} ms` : (e.cause?.message ?? e.message)}\n`);
    return 1;
  }
  const body = (await firstBytes(res, MAX_SHOWN)).trim();
  if (res.status === 200) {
    process.stdout.write(`l7mp health: ready (${url})\n`);
    return 0;
  }
  process.stderr.write(`l7mp health: not ready: ${url} answered ${res.status}${body ? ` ${body}` : ''}\n`);
  return 1;
}

/** At most `max` bytes of the body, as text; the rest is not read. */
async function firstBytes(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    while (n < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.length;
    }
  } catch { /* a broken body: show what came */ }
  void reader.cancel().catch(() => undefined);
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}
