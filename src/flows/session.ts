import type { SessionAuth } from '../config/resolve.js';
import { scrubServerText } from '../util/scrub.js';
import { Secret } from '../util/secret.js';
import { readSecret } from '../util/secret-source.js';
import {
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
import { SidecarError } from '../util/errors.js';

/*
 * The session dialect (seeds 000, 001, 003; docs/contract.md §8): POST loginUrl with
 * {"username","password","account_id"}, POST refreshUrl with {"refreshToken"}, both JSON.
 * Every refresh returns a new single-use refresh token.
 */

const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json' };

export function buildSessionLoginRequest(auth: SessionAuth, password: Secret): TokenHttpRequest {
  const body: Record<string, unknown> = {
    [auth.requestFields.username]: auth.username,
    [auth.requestFields.password]: password.reveal(),
  };
  if (auth.accountId !== undefined && auth.accountId !== '') {
    const id = auth.accountId;
    // The seeds type account_id as an integer: send digits as a number, anything else as given.
    body[auth.requestFields.accountId] =
      typeof id === 'string' && /^\d+$/.test(id) && Number.isSafeInteger(Number(id)) ? Number(id) : id;
  }
  return { url: new URL(auth.loginUrl), headers: { ...JSON_HEADERS }, body: JSON.stringify(body), secrets: [password] };
}

export function buildSessionRefreshRequest(
  auth: SessionAuth & { refreshUrl: string },
  refreshToken: Secret,
): TokenHttpRequest {
  return {
    url: new URL(auth.refreshUrl),
    headers: { ...JSON_HEADERS },
    body: JSON.stringify({ [auth.requestFields.refreshToken]: refreshToken.reveal() }),
    secrets: [refreshToken],
  };
}

/**
 * Any session-API answer -> success | rejected | error (§8, T4, T5, R1, R2). Server text quoted in
 * a reason is scrubbed of `secrets` and bounded (R4); tokens are checked before use (R1).
 */
export function parseSessionResponse(
  auth: SessionAuth,
  response: TokenHttpResponse,
  secrets: Iterable<Secret | undefined> = [],
): ParsedTokenResponse {
  const json = parseJsonObject(response.body);
  const said = (value: Record<string, unknown>) => messageOf(value, [...secrets]);
  // A `success: false` body is a rejection whatever the status (§8).
  if (json?.success === false) return { outcome: 'rejected', reason: `server answered success: false${said(json)}` };
  if (isRejectionStatus(response.status))
    return { outcome: 'rejected', reason: `${rejectionStatusText(response.status)}${json ? said(json) : ''}` };
  if (response.status < 200 || response.status > 299) return { outcome: 'error', reason: `HTTP ${response.status}` };
  if (json === undefined)
    return { outcome: 'error', reason: `HTTP ${response.status} with ${describeBody(response.body)}` };
  const token = json[auth.fields.token];
  if (typeof token !== 'string' || token === '') {
    return { outcome: 'error', reason: `response has no "${auth.fields.token}" field` };
  }
  const refresh = json[auth.fields.refreshToken];
  const problem =
    unusableToken(auth.fields.token, token) ??
    (typeof refresh === 'string' && refresh !== '' ? unusableToken(auth.fields.refreshToken, refresh) : undefined);
  // The server took the request: a refresh token sent with it is spent (T3), even though we cannot use the answer.
  if (problem !== undefined) return { outcome: 'error', reason: problem, consumed: true };
  return {
    outcome: 'success',
    token: {
      accessToken: new Secret(token),
      refreshToken: typeof refresh === 'string' && refresh !== '' ? new Secret(refresh) : undefined,
      lifetime: {
        lifetime: json[auth.fields.tokenLifetime],
        expiration: json[auth.fields.tokenExpiration],
        date: response.headers.date,
      },
    },
  };
}

/** The server's own words, scrubbed (R4): the first of message, error, error_description. */
function messageOf(json: Record<string, unknown>, secrets: Array<Secret | undefined>): string {
  for (const key of ['message', 'error', 'error_description']) {
    const value = json[key];
    if (typeof value === 'string' && value !== '') return ` (${scrubServerText(value, secrets)})`;
  }
  return '';
}

export function createSessionFlow(auth: SessionAuth): TokenFlow {
  const { refreshUrl } = auth;
  return {
    dialect: 'session',
    clientAuth: null,
    canLogin: true,
    // Without a refresh endpoint every renewal is a login.
    rotatesRefreshTokens: true,
    canRefresh: refreshUrl !== undefined,
    async buildInitialRequest() {
      return { kind: 'login', request: buildSessionLoginRequest(auth, await readSecret(auth.password)) };
    },
    async buildRefreshRequest(refreshToken) {
      if (refreshUrl === undefined) throw new SidecarError('BS_ERR_INTERNAL', 'this session account has no refreshUrl');
      return buildSessionRefreshRequest({ ...auth, refreshUrl }, refreshToken);
    },
    parseResponse: (response, secrets) => parseSessionResponse(auth, response, secrets),
    endpoint: (kind) => (kind === 'refresh' && refreshUrl !== undefined ? refreshUrl : auth.loginUrl),
  };
}
