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

  /**
   * E5, query placement: the token never reaches the client in an answer's headers (an upstream
   * redirect naming its own URL would echo it). The token's parameter is cut from `Location` and
   * `Content-Location` by its name (whatever its value: a re-encoded or an older token too); any
   * other header (or list item) still holding the token, as sent or percent-encoded in any case,
   * is dropped. Header placement: nothing to do. Changes `headers` in place.
   */
  scrubAnswerHeaders(headers: Record<string, string | string[] | number | undefined>, token: ActiveToken): void {
    if (this.query === undefined) return;
    const entry = this.#values.get(token) ?? this.#build(token);
    if ('problem' in entry) return;
    // Compared without case: an upstream may re-encode the token with lower-case hex (%2b for %2B).
    const forms = [entry.value.toLowerCase(), token.secret.reveal().toLowerCase()];
    const holds = (value: string) => forms.some((form) => value.toLowerCase().includes(form));
    for (const name of Object.keys(headers)) {
      const value = headers[name];
      if (typeof value === 'string' && URL_HEADERS.has(name)) {
        // The token's parameter goes by its name, whatever form its value takes (even an older token's).
        const cut = withoutQueryParameter(value, this.query);
        if (holds(cut)) delete headers[name];
        else if (cut !== value) headers[name] = cut.endsWith('?') ? cut.slice(0, -1) : cut;
      } else if (typeof value === 'string' && holds(value)) delete headers[name];
      else if (Array.isArray(value) && value.some(holds)) headers[name] = value.filter((item) => !holds(item));
    }
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

/**
 * `path` with the client's own `name` parameter dropped (withoutQueryParameter) and `name=value`
 * appended: the sidecar's is the only one, whichever of several an upstream would read.
 */
export function withQueryParameter(path: string, name: string, encodedValue: string): string {
  const parameter = `${encodeURIComponent(name)}=${encodedValue}`;
  const rest = withoutQueryParameter(path, name);
  const mark = rest.indexOf('?');
  if (mark === -1) return `${rest}?${parameter}`;
  return rest.length === mark + 1 ? `${rest}${parameter}` : `${rest}&${parameter}`;
}

/**
 * E5: `url` without any `name` parameter. A name matches as sent or percent-decoded, in any case
 * (ASP.NET reads queries case-insensitively). Choice made: a `;` inside a `&`-separated parameter
 * starts another one (older Python, some Java stacks split on it too), so `a=1;name=x` loses only
 * `;name=x`; the rest, and every other parameter, keep their bytes and order.
 */
export function withoutQueryParameter(url: string, name: string): string {
  const mark = url.indexOf('?');
  if (mark === -1) return url;
  const wanted = name.toLowerCase();
  const matches = (piece: string) => {
    const sentName = piece.split('=', 1)[0] as string;
    return sentName.toLowerCase() === wanted || percentDecoded(sentName)?.toLowerCase() === wanted;
  };
  const query = url.slice(mark + 1);
  const kept: string[] = [];
  for (const pair of query === '' ? [] : query.split('&')) {
    if (!pair.includes(';')) {
      if (!matches(pair)) kept.push(pair);
      continue;
    }
    const pieces = pair.split(';').filter((piece) => !matches(piece));
    if (pieces.length > 0) kept.push(pieces.join(';'));
  }
  return `${url.slice(0, mark)}?${kept.join('&')}`;
}

/** Answer headers whose value is a URL: the token's parameter is cut from them rather than the header dropped. */
const URL_HEADERS: ReadonlySet<string> = new Set(['location', 'content-location']);

function percentDecoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    // Malformed percent-encoding: only the name as sent can match.
    return undefined;
  }
}
