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

/** Why a path is refused (400 bad_request), or undefined when it is fine. */
export function pathProblem(path: string): string | undefined {
  if (path.includes('\\')) return 'a backslash is not allowed in the path';
  if (ENCODED_SEPARATOR.test(path)) return 'an encoded "/" or "\\" is not allowed in the path';
  if (DOT_SEGMENT.test(path)) return 'dot segments ("." or "..", raw or encoded) are not allowed in the path';
  if (SUSPICIOUS_ENCODING.test(path)) return 'double-encoded, NUL or overlong characters are not allowed in the path';
  return undefined;
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
