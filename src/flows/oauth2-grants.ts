import type { OAuth2Auth } from '../config/resolve.js';
import type { Secret } from '../util/secret.js';
import { readSecret } from '../util/secret-source.js';
import { readPrivateSigningKeyFile, signClientAssertion } from './client-assertion.js';

/*
 * What each OAuth 2 grant puts in the token request (RFC 6749 §4.3, §4.4, §6; RFC 7523 §2.1;
 * RFC 8693 §2.1), apart from client authentication, scope and audience.
 */

export type OAuth2Grant = 'client_credentials' | 'password' | 'refresh_token' | 'jwt_bearer' | 'token_exchange';

/** The `grant_type` value of each grant. */
export const GRANT_TYPES: Record<OAuth2Grant, string> = {
  client_credentials: 'client_credentials',
  password: 'password',
  refresh_token: 'refresh_token',
  jwt_bearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
  token_exchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
};

/** The secrets a grant spends: read fresh for every token request. */
export interface GrantSecrets {
  password?: Secret | undefined;
  refreshToken?: Secret | undefined;
  /** E3 jwt_bearer: the assertion (from assertionFile, or signed with privateKeyFile). */
  assertion?: Secret | undefined;
  /** E3 token_exchange: the subject token and the optional actor token. */
  subjectToken?: Secret | undefined;
  actorToken?: Secret | undefined;
}

/**
 * The grant's own parameters and the secrets among them (for R4 redaction). A missing secret is
 * sent empty: the configuration check has made sure the grant has what it needs.
 */
export function grantParams(
  auth: OAuth2Auth,
  grant: OAuth2Grant,
  secrets: GrantSecrets,
): { params: Record<string, string | null>; sent: Secret[] } {
  const params: Record<string, string | null> = { grant_type: GRANT_TYPES[grant] };
  const sent: Secret[] = [];
  const put = (name: string, secret: Secret | undefined) => {
    params[name] = secret?.reveal() ?? '';
    if (secret !== undefined) sent.push(secret);
  };
  if (grant === 'password') {
    params.username = auth.username ?? '';
    put('password', secrets.password);
  }
  if (grant === 'refresh_token') put('refresh_token', secrets.refreshToken);
  if (grant === 'jwt_bearer') put('assertion', secrets.assertion);
  if (grant === 'token_exchange') {
    put('subject_token', secrets.subjectToken);
    params.subject_token_type = auth.subjectTokenType;
    if (secrets.actorToken !== undefined) {
      put('actor_token', secrets.actorToken);
      params.actor_token_type = auth.actorTokenType ?? 'urn:ietf:params:oauth:token-type:jwt';
    }
    if (auth.requestedTokenType !== undefined) params.requested_token_type = auth.requestedTokenType;
    if (auth.resource !== undefined) params.resource = auth.resource;
  }
  return { params, sent };
}

/**
 * The secrets the account's own grant spends at a login, read now (files are read at every
 * request: a projected service-account token rotates). A jwt_bearer account without
 * `assertionFile` signs its assertion (RFC 7523 §3: iss = sub = clientId, aud = tokenUrl).
 */
export async function readGrantSecrets(auth: OAuth2Auth): Promise<GrantSecrets> {
  const read = (source: OAuth2Auth['password']) => (source === undefined ? undefined : readSecret(source));
  switch (auth.grant) {
    case 'password':
      return { password: await read(auth.password) };
    case 'refresh_token':
      return { refreshToken: await read(auth.refreshToken) };
    case 'jwt_bearer':
      return { assertion: auth.assertion !== undefined ? await read(auth.assertion) : await signGrantAssertion(auth) };
    case 'token_exchange':
      return { subjectToken: await read(auth.subjectToken), actorToken: await read(auth.actorToken) };
    default:
      return {};
  }
}

async function signGrantAssertion(auth: OAuth2Auth): Promise<Secret> {
  const signingKey = await readPrivateSigningKeyFile(auth);
  return signClientAssertion({ clientId: auth.clientId ?? '', audience: auth.tokenUrl, signingKey });
}
