import type { IncomingHttpHeaders } from 'node:http';
import { headerSafeTokenProblem } from '../util/header-safe.js';
import type { Secret } from '../util/secret.js';
import { SidecarError } from '../util/errors.js';
import type { DpopProver } from './dpop.js';

/** `login` gets a token from credentials; `refresh` spends a refresh token (metric label `kind`). */
export type TokenRequestKind = 'login' | 'refresh';

/** A token endpoint request, fully built: what goes on the wire, nothing else. */
export interface TokenHttpRequest {
  url: URL;
  headers: Record<string, string>;
  body: string;
  /**
   * Every secret this request carries (password, client secret, refresh token, the whole
   * Authorization value): what a server may quote back, so it is redacted from its answer (R4).
   */
  secrets: readonly Secret[];
  /** E4: signs the request's DPoP proof when it is sent (a new one for a nonce retry). */
  dpop?: DpopProver | undefined;
}

export interface TokenHttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What a token response said about the token's lifetime, raw, for tokens/lifetime.ts (T1). */
export interface LifetimeHints {
  /** `tokenLifetime` / `expires_in` as sent: a number, a numeric string, garbage or absent. */
  lifetime: unknown;
  /** `tokenExpiration` as sent (an absolute server time), if the dialect has one. */
  expiration: unknown;
  /** The response's `Date` header: the server's idea of "now". */
  date: string | undefined;
}

export interface IssuedToken {
  accessToken: Secret;
  /** Present when the server rotated or issued a refresh token (T3). */
  refreshToken: Secret | undefined;
  lifetime: LifetimeHints;
}

export type ParsedTokenResponse =
  | { outcome: 'success'; token: IssuedToken }
  /** The server said no (bad credentials, used refresh token): not worth a quick retry. */
  | { outcome: 'rejected'; reason: string }
  /** Anything transient or malformed: retried with backoff (T5). */
  | {
      outcome: 'error';
      reason: string;
      /**
       * The server accepted the request and answered with tokens that cannot be used (R1, R2):
       * a refresh token sent with it is spent, and must never be sent again (T3).
       */
      consumed?: boolean;
    };

/**
 * One token dialect (session, oauth2). Builders read secrets (files are re-read each time)
 * and return the request; the parser turns any response into an outcome. No timers, no I/O
 * beyond reading secret files: the token manager owns time and sockets.
 */
export interface TokenFlow {
  readonly dialect: 'session' | 'oauth2';
  /** True when a token can be had without a refresh token (configured credentials). */
  readonly canLogin: boolean;
  /** False when the dialect has nowhere to send a refresh token (a session API without refreshUrl). */
  readonly canRefresh: boolean;
  /** True when every refresh spends its refresh token (session); OAuth 2 servers may reuse one. */
  readonly rotatesRefreshTokens: boolean;
  /** The request that starts a chain: a login, or for grant refresh_token a refresh with the configured token. */
  buildInitialRequest(): Promise<{ kind: TokenRequestKind; request: TokenHttpRequest; sentRefreshToken?: Secret }>;
  buildRefreshRequest(refreshToken: Secret): Promise<TokenHttpRequest>;
  /**
   * Turns any response into an outcome. `secrets` are redacted from every piece of server text
   * quoted in a reason (R4): the request's own `secrets` plus whatever the account holds.
   */
  parseResponse(response: TokenHttpResponse, secrets: Iterable<Secret | undefined>): ParsedTokenResponse;
  /** Endpoint shown in logs and /status (no secrets in URLs here). */
  endpoint(kind: TokenRequestKind): string;
  /** E1: how the client authenticates at the token endpoint, in words for /status and check (no secrets); null when the dialect has no client. */
  readonly clientAuth: string | null;
  /** E4: the account's DPoP key and nonces (token requests and every proxied request); undefined without DPoP. */
  readonly dpop?: DpopProver | undefined;
}

/** A credential the flow needs is not there (no refresh token anywhere): a rejected login, not a crash (§8). */
export class CredentialUnavailableError extends SidecarError {
  constructor(message: string) {
    super('BS_ERR_CREDENTIAL_UNAVAILABLE', message);
  }
}

/** R2: a JSON object, or undefined; one UTF-8 byte-order mark before it is ignored. */
export function parseJsonObject(body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.startsWith('\ufeff') ? body.slice(1) : body);
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The reason for a rejection status, in words: a 404, 405 or 410 says the URL is not a token
 * endpoint (a typo in the URL is likelier than wrong credentials), any other just `HTTP <status>`.
 */
export function rejectionStatusText(status: number): string {
  return NOT_AN_ENDPOINT.has(status)
    ? `HTTP ${status}: no token endpoint at this URL (check the token URL)`
    : `HTTP ${status}`;
}

const NOT_AN_ENDPOINT = new Set([404, 405, 410]);

/** 408 and 429 are "try again later", not "your credentials are wrong". */
export function isRejectionStatus(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

export function describeBody(body: string): string {
  const trimmed = body.replace(/^\ufeff/, '').trim();
  if (trimmed === '') return 'an empty body';
  if (trimmed.startsWith('<')) return 'an HTML/XML body';
  return 'a body that is not a JSON object';
}

/** R1: why the token in response field `field` cannot be used, naming the field, never quoting the value. */
export function unusableToken(field: string, value: string): string | undefined {
  const problem = headerSafeTokenProblem(value);
  return problem === undefined ? undefined : `"${field}": ${problem}`;
}
