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

  #build(token: ActiveToken): { value: string } | { problem: string } {
    const raw = token.secret.reveal();
    const problem = headerSafeTokenProblem(raw);
    if (problem !== undefined) return { problem };
    if (this.query !== undefined) return { value: encodeURIComponent(raw) };
    return { value: this.#format.replaceAll('{type}', TOKEN_TYPE).replaceAll('{token}', raw) };
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
