import { createHash } from 'node:crypto';
import type { OAuth2Auth } from '../config/resolve.js';
import { Secret } from '../util/secret.js';
import { readSecret } from '../util/secret-source.js';
import {
  CredentialUnavailableError,
  describeBody,
  isRejectionStatus,
  parseJsonObject,
  type ParsedTokenResponse,
  type TokenFlow,
  type TokenHttpRequest,
  type TokenHttpResponse,
} from './types.js';

/*
 * The OAuth 2 dialect (seeds 002, 004; RFC 6749 §4.3, §4.4, §6): one token endpoint,
 * `grant_type` says what is spent. Client authentication is a small strategy (basic | body).
 */

export type OAuth2Grant = 'client_credentials' | 'password' | 'refresh_token';

export interface OAuth2Secrets {
  clientSecret?: Secret;
  password?: Secret;
  refreshToken?: Secret;
}

/** RFC 6749 §2.3.1: id and secret are form-encoded first, then joined and Base64-encoded. */
export function basicClientAuthorization(clientId: string, clientSecret: Secret | undefined): string {
  const encode = (value: string) => new URLSearchParams({ v: value }).toString().slice(2);
  const pair = `${encode(clientId)}:${encode(clientSecret?.reveal() ?? '')}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

export function buildOAuth2TokenRequest(auth: OAuth2Auth, grant: OAuth2Grant, secrets: OAuth2Secrets): TokenHttpRequest {
  const params: Record<string, string | null> = { grant_type: grant };
  if (grant === 'password') {
    params.username = auth.username ?? '';
    params.password = secrets.password?.reveal() ?? '';
  }
  if (grant === 'refresh_token') params.refresh_token = secrets.refreshToken?.reveal() ?? '';
  if (auth.scope !== undefined) params.scope = auth.scope;
  if (auth.audience !== undefined) params.audience = auth.audience;
  return finishTokenRequest(auth, params, secrets.clientSecret);
}

/** What comes back to the redirect URI, and the PKCE verifier that goes with it (RFC 6749 §4.1.3, RFC 7636 §4.5). */
export interface AuthorizationCodeGrant {
  code: string;
  redirectUri: string;
  codeVerifier: Secret;
}

/**
 * The code exchange of `bearer-sidecar authorize`: client authentication and body encoding as
 * configured. A client without a secret is a public client: its id goes in the body (RFC 6749
 * §4.1.3), never as Basic with an empty secret.
 */
export function buildAuthorizationCodeRequest(auth: OAuth2Auth, grant: AuthorizationCodeGrant, clientSecret: Secret | undefined): TokenHttpRequest {
  const params: Record<string, string | null> = {
    grant_type: 'authorization_code',
    code: grant.code,
    redirect_uri: grant.redirectUri,
    code_verifier: grant.codeVerifier.reveal(),
  };
  if (clientSecret === undefined && auth.clientId !== undefined) {
    params.client_id = auth.clientId;
    return finishTokenRequest({ ...auth, clientId: undefined }, params, undefined);
  }
  return finishTokenRequest(auth, params, clientSecret);
}

/** What the browser is sent to (RFC 6749 §4.1.1 with PKCE S256, RFC 7636 §4.3). */
export function buildAuthorizeUrl(auth: OAuth2Auth & { authorizeUrl: string }, request: { redirectUri: string; state: string; codeChallenge: string }): URL {
  const url = new URL(auth.authorizeUrl);
  url.searchParams.set('response_type', 'code');
  if (auth.clientId !== undefined) url.searchParams.set('client_id', auth.clientId);
  url.searchParams.set('redirect_uri', request.redirectUri);
  if (auth.scope !== undefined) url.searchParams.set('scope', auth.scope);
  if (auth.audience !== undefined) url.searchParams.set('audience', auth.audience);
  url.searchParams.set('state', request.state);
  url.searchParams.set('code_challenge', request.codeChallenge);
  url.searchParams.set('code_challenge_method', 'S256');
  return url;
}

/** RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))). */
export function pkceChallenge(verifier: Secret): string {
  return createHash('sha256').update(verifier.reveal(), 'ascii').digest('base64url');
}

/** Client authentication (basic | body), extraParams, then the body encoding: shared by every grant. */
function finishTokenRequest(auth: OAuth2Auth, params: Record<string, string | null>, clientSecret: Secret | undefined): TokenHttpRequest {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (auth.clientId !== undefined) {
    if (auth.clientAuth === 'basic') {
      headers.authorization = basicClientAuthorization(auth.clientId, clientSecret);
    } else {
      params.client_id = auth.clientId;
      if (clientSecret !== undefined) params.client_secret = clientSecret.reveal();
    }
  }
  // extraParams come last so they can override or (with null) drop any default, e.g. grant_type.
  Object.assign(params, auth.extraParams);
  const fields = Object.entries(params).filter((entry): entry is [string, string] => entry[1] !== null);

  if (auth.bodyEncoding === 'json') {
    headers['content-type'] = 'application/json';
    return { url: new URL(auth.tokenUrl), headers, body: JSON.stringify(Object.fromEntries(fields)) };
  }
  headers['content-type'] = 'application/x-www-form-urlencoded';
  return { url: new URL(auth.tokenUrl), headers, body: new URLSearchParams(fields).toString() };
}

/** Error codes of RFC 6749 §5.2 that mean "this will not work by asking again". */
const REJECTION_CODES = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'invalid_request', 'access_denied']);

export function parseOAuth2Response(response: TokenHttpResponse): ParsedTokenResponse {
  const json = parseJsonObject(response.body);
  const code = typeof json?.error === 'string' ? json.error : undefined;
  if (code !== undefined && (REJECTION_CODES.has(code) || isRejectionStatus(response.status))) {
    const description = typeof json?.error_description === 'string' ? `: ${json.error_description.slice(0, 200)}` : '';
    return { outcome: 'rejected', reason: `${code}${description}` };
  }
  if (isRejectionStatus(response.status)) return { outcome: 'rejected', reason: `HTTP ${response.status}` };
  if (response.status < 200 || response.status > 299) return { outcome: 'error', reason: `HTTP ${response.status}${code ? ` (${code})` : ''}` };
  if (json === undefined) return { outcome: 'error', reason: `HTTP ${response.status} with ${describeBody(response.body)}` };
  const accessToken = json.access_token;
  if (typeof accessToken !== 'string' || accessToken === '') return { outcome: 'error', reason: 'response has no "access_token" field' };
  const refreshToken = json.refresh_token;
  return {
    outcome: 'success',
    token: {
      accessToken: new Secret(accessToken),
      refreshToken: typeof refreshToken === 'string' && refreshToken !== '' ? new Secret(refreshToken) : undefined,
      lifetime: { lifetime: json.expires_in, expiration: undefined, date: response.headers.date },
    },
  };
}

export function createOAuth2Flow(auth: OAuth2Auth): TokenFlow {
  const readOptional = async (source: OAuth2Auth['clientSecret']) => (source === undefined ? undefined : readSecret(source));
  return {
    dialect: 'oauth2',
    canLogin: auth.grant !== 'refresh_token',
    rotatesRefreshTokens: false,
    canRefresh: true,
    async buildInitialRequest() {
      if (auth.grant === 'refresh_token' && auth.refreshToken === undefined) {
        throw new CredentialUnavailableError('no refresh token: the store holds none for this account and none is configured; run bearer-sidecar authorize ACCOUNT, or set refreshTokenFile');
      }
      const secrets: OAuth2Secrets = {
        clientSecret: await readOptional(auth.clientSecret),
        password: auth.grant === 'password' ? await readOptional(auth.password) : undefined,
        refreshToken: auth.grant === 'refresh_token' ? await readOptional(auth.refreshToken) : undefined,
      };
      const request = buildOAuth2TokenRequest(auth, auth.grant, secrets);
      return auth.grant === 'refresh_token'
        ? { kind: 'refresh', request, sentRefreshToken: secrets.refreshToken }
        : { kind: 'login', request };
    },
    async buildRefreshRequest(refreshToken) {
      return buildOAuth2TokenRequest(auth, 'refresh_token', { clientSecret: await readOptional(auth.clientSecret), refreshToken });
    },
    parseResponse: parseOAuth2Response,
    endpoint: () => auth.tokenUrl,
  };
}
