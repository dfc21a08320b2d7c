/*
 * Path rules of docs/contract.md §8 (F3): a request can never leave its account's prefix. The target
 * is the upstream's base path joined with the rest of the request path as strings, never by
 * URL resolution, so `//other.host/x` stays a path on the upstream.
 */

export interface SplitTarget {
  path: string;
  /** Including the leading `?`, or empty: passed on unchanged. */
  query: string;
}

/** Splits an origin-form request target; undefined for absolute-form, authority-form or `*`. */
export function splitOriginForm(target: string): SplitTarget | undefined {
  if (target.charCodeAt(0) !== 47 /* '/' */) return undefined;
  const q = target.indexOf('?');
  return q === -1 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q) };
}

const ENCODED_SEPARATOR = /%2f|%5c/i;
/** `.` or `..` (raw or %2e) as a whole segment, or before `;params` (Tomcat, Jetty, Spring drop those). */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|;|%3b|$)/i;
/** Double-encoded dots, separators or `;` (for upstreams that decode twice), NUL, overlong UTF-8 leads. */
const SUSPICIOUS_ENCODING = /%25(?:2e|2f|5c|3b)|%00|%c0|%c1/i;

/** Why a request target is refused (400 bad_request), or undefined when it is fine. */
export function targetProblem(target: string): string | undefined {
  // A fragment is never sent by a conforming client; upstreams would cut the target there, after our checks.
  if (target.includes('#')) return 'a "#" is not allowed in the request target';
  return undefined;
}

/** How many times a path is percent-decoded to look for what an upstream decoding again would see. */
const MAX_DECODINGS = 4;
const ENCODED_PERCENT = /%25/i;
const ESCAPE = /%([0-9a-f]{2})/gi;

/**
 * Why a path is refused (400 bad_request), or undefined when it is fine (§8, then S3). S3: a path
 * with an encoded `%` is percent-decoded again (bytes as Latin-1 characters) and each decoding is
 * checked the same way, until no `%25` is left; one needing more than MAX_DECODINGS is refused.
 */
export function pathProblem(path: string): string | undefined {
  let stage = path;
  for (let decodings = 0; ; decodings += 1) {
    const problem = stageProblem(stage);
    if (problem !== undefined) return decodings === 0 ? problem : `${problem} (once the path is percent-decoded again)`;
    if (!ENCODED_PERCENT.test(stage)) return undefined;
    if (decodings === MAX_DECODINGS) return 'a path percent-encoded this many times is not allowed';
    stage = decodedOnce(stage);
  }
}

/** `text` percent-decoded once, each escaped byte as the Latin-1 character of that byte (no UTF-8 step to fail). */
function decodedOnce(text: string): string {
  return text.replace(ESCAPE, (_escape, byte: string) => String.fromCharCode(Number.parseInt(byte, 16)));
}

/** The checks of one decoding of the path. */
function stageProblem(path: string): string | undefined {
  if (path.includes('\\')) return 'a backslash is not allowed in the path';
  if (ENCODED_SEPARATOR.test(path)) return 'an encoded "/" or "\\" is not allowed in the path';
  if (DOT_SEGMENT.test(path)) return 'dot segments ("." or "..", raw or encoded) are not allowed in the path';
  if (SUSPICIOUS_ENCODING.test(path)) return 'double-encoded, NUL or overlong characters are not allowed in the path';
  if (path.includes('%') && hidesAnEscape(path))
    return 'a "%" that is not an escape but becomes one once the path is decoded is not allowed in the path';
  // Only an escape of a byte >= 0x80, a %u escape or a non-ASCII character can hide a look-alike: the rest skip the slow look.
  return NEEDS_UNICODE_LOOK.test(path) ? unicodeProblem(path) : undefined;
}

const STRAY_PERCENT = /%(?![0-9a-f]{2})/gi;

/**
 * S3: a `%` that is no escape (`%%32%65`, `%2%65`) is kept as it is by lenient decoders (Python's
 * `unquote`, PHP's `urldecode`, nginx), and the escapes after it decode into its two hex digits:
 * a second decoding then sees `%2e`. A literal `%` (sent as `%25`) followed by anything else passes.
 */
function hidesAnEscape(path: string): boolean {
  for (const match of path.matchAll(STRAY_PERCENT)) {
    const next = path.slice(match.index + 1, match.index + 7);
    const decoded = decodedOnce(next);
    if (/^[0-9a-f]{2}/i.test(decoded)) return true;
  }
  return false;
}

const NEEDS_UNICODE_LOOK = /%[89a-fu]|[\u0080-\uffff]/i;
const PERCENT_U = /%u[0-9a-f]{4}/i;
const HEX_PAIR = /^[0-9a-f]{2}$/i;
/** The smallest code point each UTF-8 sequence length may carry; anything smaller is overlong. */
const SMALLEST = [0, 0, 0x80, 0x800, 0x1_0000, 0x20_0000, 0x400_0000];

/**
 * S3: what an upstream that decodes and then NFKC-normalises the path could turn into a dot
 * segment or a separator: `%u` escapes (IIS), overlong UTF-8 (any length, also the old 5- and
 * 6-byte forms), and characters whose NFKC form holds ".", "/" or "\" (`%ef%bc%8e`, U+FF0E).
 * Bytes that are not UTF-8 otherwise pass: read as Latin-1, none of them normalises to those.
 * The path is read byte by byte: escapes decoded, other characters as Node gives them (Latin-1).
 */
function unicodeProblem(path: string): string | undefined {
  if (PERCENT_U.test(path)) return '%u escapes are not allowed in the path';
  const bytes = pathBytes(path);
  for (let i = 0; i < bytes.length; i += 1) {
    if (bytes[i]! < 0x80) continue;
    const decoded = utf8At(bytes, i);
    if (decoded === undefined) continue;
    if (decoded.codePoint < SMALLEST[decoded.length]!) return 'overlong UTF-8 encodings are not allowed in the path';
    if (decoded.codePoint <= 0x10_ffff && normalisesToSeparator(decoded.codePoint))
      return `U+${decoded.codePoint.toString(16).toUpperCase().padStart(4, '0')} is not allowed in the path: Unicode normalisation turns it into ".", "/" or "\\"`;
    i += decoded.length - 1;
  }
  return undefined;
}

/** The path's bytes: `%XX` decoded, other characters as Node gives them (Latin-1, one byte each), else as UTF-8. */
function pathBytes(path: string): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i += 1) {
    const code = path.codePointAt(i)!;
    if (code === 37 /* % */ && HEX_PAIR.test(path.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(path.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (code <= 0xff) {
      bytes.push(code);
    } else {
      bytes.push(...Buffer.from(String.fromCodePoint(code), 'utf8'));
      if (code > 0xffff) i += 1;
    }
  }
  return bytes;
}

/** The UTF-8 sequence (1990s lengths up to 6 included) starting at `start`, or undefined if there is none. */
function utf8At(bytes: readonly number[], start: number): { codePoint: number; length: number } | undefined {
  const lead = bytes[start]!;
  const length =
    lead >= 0xfc
      ? lead >= 0xfe
        ? 0
        : 6
      : lead >= 0xf8
        ? 5
        : lead >= 0xf0
          ? 4
          : lead >= 0xe0
            ? 3
            : lead >= 0xc0
              ? 2
              : 0;
  if (length === 0 || start + length > bytes.length) return undefined;
  let codePoint = lead & (0x7f >> length);
  for (let k = 1; k < length; k += 1) {
    const next = bytes[start + k]!;
    if ((next & 0xc0) !== 0x80) return undefined;
    codePoint = codePoint * 64 + (next & 0x3f);
  }
  return { codePoint, length };
}

/** True when the character's NFKC form holds ".", "/" or "\" (U+FF0E, U+2024, U+2025, U+2026, U+FF0F, U+2105 ...). */
function normalisesToSeparator(codePoint: number): boolean {
  const form = String.fromCodePoint(codePoint).normalize('NFKC');
  return form.includes('.') || form.includes('/') || form.includes('\\');
}

/** `/v2` + `/users` → `/v2/users`; an empty rest keeps the base (or `/`). */
export function joinUpstreamPath(basePath: string, rest: string): string {
  const base = basePath.endsWith('/') ? basePath.slice(0, -1) : basePath;
  if (rest === '') return base === '' ? '/' : base;
  return base + rest;
}

/** True when `path` is `prefix` or starts with `prefix/` (whole segments only). */
export function matchesPrefix(path: string, prefix: string): boolean {
  return path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47);
}
