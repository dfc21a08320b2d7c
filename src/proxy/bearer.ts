import type { TokenPlacement } from '../config/resolve.js';
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

/** The token's type for `{type}`: tokens are bearer tokens in this version. */
const TOKEN_TYPE = 'Bearer';

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
  readonly #format: string;
  /** Per token: its header value or encoded parameter value, or the R1 problem with it. */
  readonly #values = new WeakMap<ActiveToken, { value: string } | { problem: string }>();

  constructor(placement: TokenPlacement) {
    this.header = 'header' in placement ? placement.header : undefined;
    this.query = 'query' in placement ? placement.query : undefined;
    this.#format = 'header' in placement ? placement.format : '{token}';
  }

  /**
   * The header value (`format` with `{type}` and `{token}` filled in) or the percent-encoded query
   * value for `token`. Throws TokenNotHeaderSafeError when the token fails R1 (util/header-safe.ts).
   */
  valueFor(token: ActiveToken): string {
    const known = this.#values.get(token);
    const entry = known ?? this.#build(token);
    if (known === undefined) this.#values.set(token, entry);
    if ('problem' in entry) throw new TokenNotHeaderSafeError(entry.problem, known === undefined);
    return entry.value;
  }

  /** Sets the token's header in `headers` (replacing the client's own value of it); query placement: nothing. */
  writeHeader(headers: Record<string, string | string[]>, token: ActiveToken): void {
    if (this.header !== undefined) headers[this.header] = this.valueFor(token);
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
   * `Content-Location`; any other header (or list item) still holding the token, as sent or
   * percent-encoded, is dropped. Header placement: nothing to do. Changes `headers` in place.
   */
  scrubAnswerHeaders(headers: Record<string, string | string[] | number | undefined>, token: ActiveToken): void {
    if (this.query === undefined) return;
    const entry = this.#values.get(token) ?? this.#build(token);
    if ('problem' in entry) return;
    const forms = [entry.value, token.secret.reveal()];
    const holds = (value: string) => forms.some((form) => value.includes(form));
    for (const name of Object.keys(headers)) {
      const value = headers[name];
      if (typeof value === 'string' && holds(value)) {
        const cut = URL_HEADERS.has(name) ? withoutQueryParameter(value, this.query) : value;
        if (holds(cut)) delete headers[name];
        else headers[name] = cut.endsWith('?') ? cut.slice(0, -1) : cut;
      } else if (Array.isArray(value) && value.some(holds)) headers[name] = value.filter((item) => !holds(item));
    }
  }

  #build(token: ActiveToken): { value: string } | { problem: string } {
    const raw = token.secret.reveal();
    const problem = headerSafeTokenProblem(raw);
    if (problem !== undefined) return { problem };
    if (this.query !== undefined) return { value: encodeURIComponent(raw) };
    return { value: this.#format.replaceAll('{type}', TOKEN_TYPE).replaceAll('{token}', raw) };
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
