import type { ActiveToken } from '../tokens/active-token.js';
import { headerSafeTokenProblem } from '../util/header-safe.js';
import { SidecarError } from '../util/errors.js';

/**
 * R1 on the writer side: a token that is not header-safe never reaches a header. The token
 * parsers refuse such tokens already; this is the second fence, for any token that got past
 * them (a store written by another version, a future flow), at the one place the data plane
 * turns a token into a header value.
 */
export class TokenNotHeaderSafeError extends SidecarError {
  constructor(
    /** `token not header-safe (control character)`: says why, never quotes the token. */
    readonly reason: string,
    /** True the first time this token is refused: report it once, not once per request. */
    readonly firstReport: boolean,
  ) {
    super('BS_ERR_TOKEN_NOT_HEADER_SAFE', reason);
  }
}

/** Each token is checked once, not per request (T2: the hot path does no per-request work on it). */
const problems = new WeakMap<ActiveToken, string | null>();

/**
 * The `Authorization` value (`Bearer <token>`) for `token`, for an HTTP request or a WebSocket
 * upgrade. Throws TokenNotHeaderSafeError when the token fails the R1 rule of util/header-safe.ts.
 */
export function authorizationFor(token: ActiveToken): string {
  const known = problems.get(token);
  const problem = known === undefined ? (headerSafeTokenProblem(token.secret.reveal()) ?? null) : known;
  if (known === undefined) problems.set(token, problem);
  if (problem !== null) throw new TokenNotHeaderSafeError(problem, known === undefined);
  return token.authorizationHeader();
}
