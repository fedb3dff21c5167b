// Normalise an HTTP request path before any rule sees it, as Envoy's
// `normalize_path` + `merge_slashes` do: a rule `starts: /public` must not
// match `/public/../admin`, and the upstream receives the path the rule
// matched, not the one the client sent.
//
// What is done, in order (README "HTTP paths"):
// 1. Percent-encoded unreserved characters (RFC 3986 2.3: ALPHA DIGIT - . _ ~)
//    are decoded, so `%2e%2e` is `..` and `%61dmin` is `admin`; every other
//    escape stays encoded, its hex digits upper-cased (RFC 3986 6.2.2.1).
// 2. An encoded slash or backslash (`%2F`, `%5C`) stays encoded and is not a
//    segment separator here (Envoy's KEEP_UNCHANGED): REST object names such
//    as `/l7mp.io/v1/Target/default/dns` travel that way. Whether an upstream
//    decodes it differs, so a path that would hold a dot segment if they
//    were decoded (`/public%2F..%2Fadmin`) is refused (400). A raw
//    backslash, not allowed in a URI path and read as a slash by some
//    servers, is refused, and so is a malformed escape (`%zz`, a lone `%`).
// 3. Runs of slashes are merged (`//a///b` is `/a/b`).
// 4. Dot segments are removed (RFC 3986 5.2.4 remove_dot_segments); a path
//    that climbs above the root (`/..`, `/a/../..`) is refused (400), where
//    RFC 3986 would silently clamp it.
// The query string is not touched.

export type PathCheck = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string };

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39)
    || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

/** Step 1: decode unreserved escapes, upper-case the others, refuse malformed ones. */
function decodeUnreserved(raw: string): PathCheck {
  if (raw.indexOf('%') < 0) return { ok: true, path: raw };
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== '%') {
      out += ch;
      continue;
    }
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    // Refused rather than kept: kept, it could shield a later `%2e%2e` from
    // step 1 in a decoder that gives up on the whole path.
    if (hi < 0 || lo < 0) return { ok: false, reason: `malformed percent-encoding at offset ${i}` };
    const c = hi * 16 + lo;
    out += isUnreserved(c) ? String.fromCharCode(c) : `%${raw.slice(i + 1, i + 3).toUpperCase()}`;
    i += 2;
  }
  return { ok: true, path: out };
}

/** Normalise a request path (without its query); `{ok: false}` means answer 400. */
export function normalizePath(raw: string): PathCheck {
  if (raw === '*') return { ok: true, path: raw }; // OPTIONS * (asterisk-form)
  if (!raw.startsWith('/')) return { ok: false, reason: 'the path must start with "/"' };
  if (raw.includes('\\')) return { ok: false, reason: 'a backslash is not accepted in a path' };
  const decoded = decodeUnreserved(raw);
  if (!decoded.ok) return decoded;
  const p = decoded.path;
  // The common case, a clean path, costs one scan and no allocation.
  const clean = !p.includes('//') && !p.includes('/.') ? p : removeDotSegments(p);
  if (clean === undefined) return { ok: false, reason: 'the path climbs above the root' };
  if (/%2F|%5C/.test(clean) && clean.replace(/%2F|%5C/g, '/').split('/').some((seg) => seg === '.' || seg === '..')) {
    return { ok: false, reason: 'a dot segment next to an encoded slash or backslash (%2F, %5C)' };
  }
  return { ok: true, path: clean };
}

/** RFC 3986 5.2.4 with runs of slashes merged; undefined when the path climbs above the root. */
function removeDotSegments(p: string): string | undefined {
  const segments = p.split('/');
  const out: string[] = [];
  let trailingSlash = false;
  // segments[0] is the empty string before the leading slash.
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '' || seg === '.') {
      trailingSlash = last; // `/a/` and `/a/.` keep their trailing slash; empty inner segments merge
      continue;
    }
    if (seg === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      trailingSlash = last;
      continue;
    }
    out.push(seg);
    trailingSlash = false;
  }
  return `/${out.join('/')}${trailingSlash && out.length > 0 ? '/' : ''}`;
}
