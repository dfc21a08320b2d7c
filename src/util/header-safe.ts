/**
 * R1: the one rule for a token (access or refresh) that will be written into an HTTP header
 * field: a bearer header, a WebSocket upgrade, a DPoP proof, a custom injection header.
 *
 * A token must be non-empty visible ASCII (0x21-0x7E): no control characters (CR, LF, NUL, ...),
 * no bytes outside ASCII, no whitespace anywhere. RFC 6750 §2.1's `b64token` is a subset of this;
 * an inner space is refused too, since `Bearer a b` would be read as a different credential.
 */
const HEADER_SAFE_TOKEN = /^[\x21-\x7e]+$/;

/** The reason given (outcome `error`, T5) for a token that fails R1; stable, grep-able text. */
export const TOKEN_NOT_HEADER_SAFE = 'token not header-safe';

/** True when `value` may be written as (part of) a header field value as a token (R1). */
export function isHeaderSafeToken(value: string): boolean {
  return HEADER_SAFE_TOKEN.test(value);
}

/**
 * Describes why `value` is not header-safe without quoting it (it is a secret): e.g.
 * `token not header-safe (trailing whitespace)`. Undefined when it is safe (R1).
 */
export function headerSafeTokenProblem(value: string): string | undefined {
  if (isHeaderSafeToken(value)) return undefined;
  if (value === '') return `${TOKEN_NOT_HEADER_SAFE} (empty)`;
  if (/^\s|\s$/.test(value)) return `${TOKEN_NOT_HEADER_SAFE} (leading or trailing whitespace)`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) return `${TOKEN_NOT_HEADER_SAFE} (control character)`;
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(value)) return `${TOKEN_NOT_HEADER_SAFE} (non-ASCII character)`;
  return `${TOKEN_NOT_HEADER_SAFE} (space inside)`;
}
