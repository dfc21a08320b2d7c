import { createHash } from 'node:crypto';
import type { OAuth2Auth } from '../config/resolve.js';
import { scrubServerText } from '../util/scrub.js';
import { Secret } from '../util/secret.js';
import { readSecret } from '../util/secret-source.js';
import { clientSecretSigningKey, SigningKeyError } from '../util/signing-key.js';
import { CLIENT_ASSERTION_TYPE, readPrivateSigningKeyFile, signClientAssertion } from './client-assertion.js';
import { DpopProver } from './dpop.js';
import { grantParams, readGrantSecrets, type GrantSecrets, type OAuth2Grant } from './oauth2-grants.js';
import {
  CredentialUnavailableError,
  describeBody,
  isRejectionStatus,
  rejectionStatusText,
  parseJsonObject,
  type ParsedTokenResponse,
  type TokenFlow,
  type TokenHttpRequest,
  type TokenHttpResponse,
  unusableToken,
} from './types.js';

/*
 * The OAuth 2 dialect (seeds 002, 004; RFC 6749 §4.3, §4.4, §6): one token endpoint,
 * `grant_type` says what is spent. Client authentication is a small strategy (basic | body).
 */

export type { OAuth2Grant } from './oauth2-grants.js';

export interface OAuth2Secrets extends GrantSecrets {
  clientSecret?: Secret | undefined;
  /** E1: the signed client assertion of `private_key_jwt` / `client_secret_jwt` (made per request). */
  clientAssertion?: Secret | undefined;
}

/** RFC 6749 §2.3.1: id and secret are form-encoded first, then joined and Base64-encoded. */
export function basicClientAuthorization(clientId: string, clientSecret: Secret | undefined): string {
  const encode = (value: string) => new URLSearchParams({ v: value }).toString().slice(2);
  const pair = `${encode(clientId)}:${encode(clientSecret?.reveal() ?? '')}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

export function buildOAuth2TokenRequest(
  auth: OAuth2Auth,
  grant: OAuth2Grant,
  secrets: OAuth2Secrets,
): TokenHttpRequest {
  const { params, sent } = grantParams(auth, grant, secrets);
  if (auth.scope !== undefined) params.scope = auth.scope;
  if (auth.audience !== undefined) params.audience = auth.audience;
  return finishTokenRequest(auth, params, secrets, sent);
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
export function buildAuthorizationCodeRequest(
  auth: OAuth2Auth,
  grant: AuthorizationCodeGrant,
  client: Pick<OAuth2Secrets, 'clientSecret' | 'clientAssertion'>,
): TokenHttpRequest {
  const params: Record<string, string | null> = {
    grant_type: 'authorization_code',
    code: grant.code,
    redirect_uri: grant.redirectUri,
    code_verifier: grant.codeVerifier.reveal(),
  };
  if (client.clientSecret === undefined && client.clientAssertion === undefined && auth.clientId !== undefined) {
    params.client_id = auth.clientId;
    return finishTokenRequest({ ...auth, clientId: undefined }, params, {}, [grant.codeVerifier]);
  }
  return finishTokenRequest(auth, params, client, [grant.codeVerifier]);
}

/** What the browser is sent to (RFC 6749 §4.1.1 with PKCE S256, RFC 7636 §4.3). */
export function buildAuthorizeUrl(
  auth: OAuth2Auth & { authorizeUrl: string },
  request: { redirectUri: string; state: string; codeChallenge: string },
): URL {
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

/**
 * Client authentication as `clientAuth` says (basic, body, a client assertion, or none),
 * extraParams, then the body encoding: shared by every grant. `sent` lists the grant's own
 * secrets; the client's are added, for R4 redaction.
 */
function finishTokenRequest(
  auth: OAuth2Auth,
  params: Record<string, string | null>,
  client: Pick<OAuth2Secrets, 'clientSecret' | 'clientAssertion'>,
  sent: Secret[],
): TokenHttpRequest {
  const headers: Record<string, string> = { accept: 'application/json' };
  const secrets = [...sent];
  const { clientSecret, clientAssertion } = client;
  if (clientSecret !== undefined) secrets.push(clientSecret);
  if (auth.clientId !== undefined) {
    if (auth.clientAuth === 'basic') {
      headers.authorization = basicClientAuthorization(auth.clientId, clientSecret);
      secrets.push(new Secret(headers.authorization), new Secret(headers.authorization.slice('Basic '.length)));
    } else {
      // body, none, and the JWT methods all name the client in the body (RFC 6749 §2.3.1, RFC 7523 §3).
      params.client_id = auth.clientId;
      if (auth.clientAuth === 'body' && clientSecret !== undefined) params.client_secret = clientSecret.reveal();
      if (clientAssertion !== undefined) {
        params.client_assertion_type = CLIENT_ASSERTION_TYPE;
        params.client_assertion = clientAssertion.reveal();
        secrets.push(clientAssertion);
      }
    }
  }
  // extraParams come last so they can override or (with null) drop any default, e.g. grant_type.
  Object.assign(params, auth.extraParams);
  const fields = Object.entries(params).filter((entry): entry is [string, string] => entry[1] !== null);

  if (auth.bodyEncoding === 'json') {
    headers['content-type'] = 'application/json';
    return { url: new URL(auth.tokenUrl), headers, body: JSON.stringify(Object.fromEntries(fields)), secrets };
  }
  headers['content-type'] = 'application/x-www-form-urlencoded';
  return { url: new URL(auth.tokenUrl), headers, body: new URLSearchParams(fields).toString(), secrets };
}

/** Error codes of RFC 6749 §5.2 that mean "this will not work by asking again". */
const REJECTION_CODES = new Set([
  'invalid_grant',
  'invalid_client',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_request',
  'access_denied',
]);

/**
 * R2, E4: the token type an account can send (compared case-insensitively, RFC 6749 §7.1):
 * Bearer, or with DPoP configured DPoP only (a Bearer answer to a DPoP request is a downgrade,
 * refused rather than sent unbound).
 */
const tokenTypeFor = (dpop: boolean) => (dpop ? 'DPoP' : 'Bearer');

/**
 * Any OAuth 2 token endpoint answer -> success | rejected | error (RFC 6749 §5.1, §5.2; T4, T5,
 * R1, R2). Server text quoted in a reason is scrubbed of `secrets` and bounded (R4). A missing
 * `token_type` is taken as Bearer (servers that leave it out mean Bearer); any other type is an error.
 */
export function parseOAuth2Response(
  response: TokenHttpResponse,
  secrets: Iterable<Secret | undefined> = [],
  options: { dpop?: boolean } = {},
): ParsedTokenResponse {
  const json = parseJsonObject(response.body);
  const scrub = (text: string) => scrubServerText(text, [...secrets]);
  const code = typeof json?.error === 'string' ? json.error : undefined;
  if (code !== undefined && (REJECTION_CODES.has(code) || isRejectionStatus(response.status))) {
    const description = typeof json?.error_description === 'string' ? `: ${json.error_description}` : '';
    return { outcome: 'rejected', reason: scrub(`${code}${description}`) };
  }
  if (isRejectionStatus(response.status)) return { outcome: 'rejected', reason: rejectionStatusText(response.status) };
  if (response.status < 200 || response.status > 299)
    return { outcome: 'error', reason: `HTTP ${response.status}${code ? ` (${scrub(code)})` : ''}` };
  if (json === undefined)
    return { outcome: 'error', reason: `HTTP ${response.status} with ${describeBody(response.body)}` };
  const accessToken = json.access_token;
  if (typeof accessToken !== 'string' || accessToken === '')
    return { outcome: 'error', reason: 'response has no "access_token" field' };
  const refreshToken = json.refresh_token;
  const problem =
    unusableToken('access_token', accessToken) ??
    (typeof refreshToken === 'string' && refreshToken !== ''
      ? unusableToken('refresh_token', refreshToken)
      : undefined) ??
    tokenTypeProblem(json.token_type, scrub, tokenTypeFor(options.dpop === true));
  // The server took the request: a refresh token sent with it may be spent (T3), though the answer is unusable.
  if (problem !== undefined) return { outcome: 'error', reason: problem, consumed: true };
  return {
    outcome: 'success',
    token: {
      accessToken: new Secret(accessToken),
      refreshToken: typeof refreshToken === 'string' && refreshToken !== '' ? new Secret(refreshToken) : undefined,
      lifetime: { lifetime: json.expires_in, expiration: undefined, date: response.headers.date },
    },
  };
}

/**
 * R2, E4: undefined for the `expected` type (any case; no type counts as Bearer); otherwise a
 * reason naming the type.
 */
function tokenTypeProblem(type: unknown, scrub: (text: string) => string, expected: string): string | undefined {
  const given = type === undefined ? 'bearer' : typeof type === 'string' ? type.toLowerCase() : undefined;
  if (given === expected.toLowerCase()) return undefined;
  const named =
    type === undefined
      ? 'missing (Bearer)'
      : typeof type === 'string'
        ? `"${scrub(type.slice(0, 40))}"`
        : `a ${type === null ? 'null' : typeof type}`;
  const why =
    expected === 'DPoP'
      ? 'the account asked for a DPoP-bound token and will not send an unbound one'
      : 'the sidecar cannot send this token (DPoP tokens need auth.dpop)';
  return `token_type ${named} is not supported (only ${expected}): ${why}`;
}

export function createOAuth2Flow(auth: OAuth2Auth): TokenFlow {
  const dpop = auth.dpop === undefined ? undefined : new DpopProver(auth.dpop);
  // E4: the request signs its DPoP proof as it is sent (exchange.ts), with the nonce known then.
  const withProof = (request: TokenHttpRequest): TokenHttpRequest =>
    dpop === undefined ? request : { ...request, dpop };
  const readOptional = async (source: OAuth2Auth['clientSecret']) =>
    source === undefined ? undefined : readSecret(source);
  /** The client's credentials for one token request: its secret, and a new assertion (E1). */
  const clientCredentials = async () => {
    const clientSecret = await readOptional(auth.clientSecret);
    return { clientSecret, clientAssertion: await makeClientAssertion(auth, clientSecret) };
  };
  return {
    dialect: 'oauth2',
    clientAuth: describeClientAuth(auth),
    canLogin: auth.grant !== 'refresh_token',
    rotatesRefreshTokens: false,
    canRefresh: true,
    async buildInitialRequest() {
      if (auth.grant === 'refresh_token' && auth.refreshToken === undefined) {
        throw new CredentialUnavailableError(
          'no refresh token: the store holds none for this account and none is configured; run bearer-sidecar authorize ACCOUNT, or set refreshTokenFile',
        );
      }
      const secrets: OAuth2Secrets = { ...(await clientCredentials()), ...(await readGrantSecrets(auth)) };
      const request = withProof(buildOAuth2TokenRequest(auth, auth.grant, secrets));
      return auth.grant === 'refresh_token'
        ? { kind: 'refresh', request, sentRefreshToken: secrets.refreshToken }
        : { kind: 'login', request };
    },
    async buildRefreshRequest(refreshToken) {
      return withProof(
        buildOAuth2TokenRequest(auth, 'refresh_token', { ...(await clientCredentials()), refreshToken }),
      );
    },
    parseResponse: (response, secrets) => parseOAuth2Response(response, secrets, { dpop: dpop !== undefined }),
    dpop,
    endpoint: () => auth.tokenUrl,
  };
}

/**
 * E1: a new client assertion for `private_key_jwt` (the key file read now: a rotated key is used
 * at once) or `client_secret_jwt` (an HMAC of `clientSecret`, `signingAlg` or HS256, and HS256
 * when `privateKeyFile` signs a jwt_bearer grant); undefined for other methods.
 * Throws SigningKeyError when the key cannot be used.
 */
export async function makeClientAssertion(
  auth: OAuth2Auth,
  clientSecret: Secret | undefined,
): Promise<Secret | undefined> {
  if (auth.clientAuth !== 'private_key_jwt' && auth.clientAuth !== 'client_secret_jwt') return undefined;
  // E3: with privateKeyFile for the grant, signingAlg and keyId are the key's; the HMAC is HS256.
  const options = auth.privateKey === undefined ? { alg: auth.signingAlg, keyId: auth.keyId } : {};
  let signingKey;
  if (auth.clientAuth === 'private_key_jwt') signingKey = await readPrivateSigningKeyFile(auth);
  else if (clientSecret === undefined)
    throw new SigningKeyError('client_secret_jwt needs the client secret (clientSecret or clientSecretFile)');
  else signingKey = clientSecretSigningKey(clientSecret, options);
  return signClientAssertion({ clientId: auth.clientId ?? '', audience: auth.tokenUrl, signingKey });
}

/**
 * E1: the client authentication in words, e.g. `private_key_jwt (key /secrets/key.pem, ES256, kid
 * k1)`: the method, and for the JWT methods the key file, algorithm and kid as configured.
 */
export function describeClientAuth(auth: OAuth2Auth): string | null {
  if (auth.clientId === undefined) return null;
  const parts: string[] = [];
  if (auth.clientAuth === 'private_key_jwt') parts.push(`key ${auth.privateKeyFile ?? ''}`);
  if (auth.clientAuth === 'tls_client_auth') parts.push(`certificate ${auth.tls?.certFile ?? ''}`);
  if (auth.clientAuth === 'private_key_jwt' || auth.clientAuth === 'client_secret_jwt')
    parts.push(auth.signingAlg ?? (auth.clientAuth === 'client_secret_jwt' ? 'HS256' : 'algorithm from the key'));
  if (auth.keyId !== undefined) parts.push(`kid ${auth.keyId}`);
  return parts.length === 0 ? auth.clientAuth : `${auth.clientAuth} (${parts.join(', ')})`;
}
