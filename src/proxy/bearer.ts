import type { TokenPlacement } from '../config/resolve.js';
import type { ActiveToken } from '../tokens/active-token.js';
import { headerSafeTokenProblem } from '../util/header-safe.js';
import { SidecarError } from '../util/errors.js';
import { accessTokenHash, type DpopProver } from '../flows/dpop.js';

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

/** The token's type for `{type}`: Bearer, or DPoP for an account with `auth.dpop` (E4). */
const tokenType = (dpop: DpopProver | undefined) => (dpop === undefined ? 'Bearer' : 'DPoP');

/**
 * E5: writes the token where the account's `inject` says: a header (`format` applied) or a query
 * parameter. The value is built and checked (R1) once per token, not per request (T2): the hot
 * path does one WeakMap lookup, as it did for the plain `Authorization` header.
 */
export class TokenInjector {
  /** The lower-cased header the token goes in, or undefined when it goes in the query. */
  readonly header: string | undefined;
  /** The query parameter the token goes in, or undefined when it goes in a header. */
  readonly query: string | undefined;
  /** E4: signs a DPoP proof for every upstream request; undefined without DPoP. */
  readonly dpop: DpopProver | undefined;
  readonly #format: string;
  /** Per token: its header value or encoded parameter value (and E4's `ath`), or the R1 problem with it. */
  readonly #values = new WeakMap<ActiveToken, { value: string; ath: string } | { problem: string }>();

  constructor(placement: TokenPlacement, dpop?: DpopProver) {
    this.header = 'header' in placement ? placement.header : undefined;
    this.query = 'query' in placement ? placement.query : undefined;
    this.#format = 'header' in placement ? placement.format : '{token}';
    this.dpop = dpop;
  }

  /**
   * The header value (`format` with `{type}` and `{token}` filled in) or the percent-encoded query
   * value for `token`. Throws TokenNotHeaderSafeError when the token fails R1 (util/header-safe.ts).
   */
  valueFor(token: ActiveToken): string {
    return this.#entry(token).value;
  }

  #entry(token: ActiveToken): { value: string; ath: string } {
    const known = this.#values.get(token);
    const entry = known ?? this.#build(token);
    if (known === undefined) this.#values.set(token, entry);
    if ('problem' in entry) throw new TokenNotHeaderSafeError(entry.problem, known === undefined);
    return entry;
  }

  /**
   * Sets the token's header in `headers` (replacing the client's own value of it); query
   * placement: nothing. E4: with DPoP, also a new `DPoP` proof for `proof` (method and the
   * upstream URL without query), replacing the client's own `DPoP` header.
   */
  writeHeader(
    headers: Record<string, string | string[]>,
    token: ActiveToken,
    proof?: { htm: string; htu: string },
  ): void {
    const entry = this.#entry(token);
    if (this.header !== undefined) headers[this.header] = entry.value;
    if (this.dpop !== undefined && proof !== undefined)
      headers.dpop = this.dpop.requestProof(proof.htm, proof.htu, entry.ath);
  }

  /**
   * The upstream request target with the token as the query parameter, the client's own value of
   * it removed (by its name as sent or percent-decoded), every other parameter unchanged and in
   * order (§8). Header placement: `path` unchanged. Throws as valueFor does.
   */
  targetWithToken(path: string, token: ActiveToken): string {
    if (this.query === undefined) return path;
    return withQueryParameter(path, this.query, this.valueFor(token));
  }

  #build(token: ActiveToken): { value: string; ath: string } | { problem: string } {
    const raw = token.secret.reveal();
    const problem = headerSafeTokenProblem(raw);
    if (problem !== undefined) return { problem };
    // E4: `ath` once per token, not per request.
    const ath = this.dpop === undefined ? '' : accessTokenHash(raw);
    if (this.query !== undefined) return { value: encodeURIComponent(raw), ath };
    return { value: this.#format.replaceAll('{type}', tokenType(this.dpop)).replaceAll('{token}', raw), ath };
  }
}

/** `path` with every `name` parameter (as sent or percent-decoded) dropped and `name=value` appended. */
export function withQueryParameter(path: string, name: string, encodedValue: string): string {
  const mark = path.indexOf('?');
  const parameter = `${encodeURIComponent(name)}=${encodedValue}`;
  if (mark === -1) return `${path}?${parameter}`;
  const query = path.slice(mark + 1);
  const kept = (query === '' ? [] : query.split('&')).filter((pair) => {
    const sentName = pair.split('=', 1)[0] as string;
    return sentName !== name && percentDecoded(sentName) !== name;
  });
  kept.push(parameter);
  return `${path.slice(0, mark)}?${kept.join('&')}`;
}

function percentDecoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    // Malformed percent-encoding: only the name as sent can match.
    return undefined;
  }
}
