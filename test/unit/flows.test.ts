import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { OAuth2Auth, SessionAuth } from '../../src/config/resolve.js';
import { basicClientAuthorization, buildOAuth2TokenRequest, parseOAuth2Response } from '../../src/flows/oauth2.js';
import { buildSessionLoginRequest, buildSessionRefreshRequest, parseSessionResponse } from '../../src/flows/session.js';
import type { ParsedTokenResponse, TokenHttpResponse } from '../../src/flows/types.js';
import { Secret } from '../../src/util/secret.js';
import { readSecret } from '../../src/util/secret-source.js';

/* Seed 001: the session login response, verbatim (minus the "..."). */
const SEED_001_LOGIN_RESPONSE = {
  success: true,
  guid: '71067212-8141-4887-b48e-ccabcfb07196',
  token: 'c04c7ff7-5fa1-48fb-aa2a-bcf97a6b8a79',
  tokenExpiration: '2018-04-01T21:39:12+00:00',
  tokenLifetime: 3600,
  refreshToken: 'dff78899-ed3b-4965-8f44-474ac2bf7354',
  refreshTokenExpiration: '2018-04-30T21:39:12+00:00',
};

/* Seed 004: the example client and user. */
const SEED_004 = {
  clientId: 'BA779C49-4D93-4785-9596-25805A24C5DC',
  clientSecret: '4AD3CE00-8ED5-4F0A-A979-ACE64A15207C',
  username: 'jsmith',
  password: 'password123',
  refreshToken:
    'C0fJeyBPMXOTuSThwUh2S0Vq83ezkMTjoIDroK9LCNCy7jscLkWXCvsuidxhF9t_FGHpo-_gUgi5J7eUejpfEgw3SQXHstBaDR0eauY2s3g%3d',
};

function authOf(auth: Record<string, unknown>): unknown {
  const config = parseConfig({ accounts: { acct: { upstream: 'https://api.example.net', auth } } }, { env: {} });
  const account = config.accounts[0];
  if (account === undefined) throw new Error('no account');
  return account.auth;
}

function sessionAuth(extra: Record<string, unknown> = {}): SessionAuth {
  return authOf({
    flow: 'session',
    loginUrl: 'https://api.teletracker.net/auth/login',
    refreshUrl: 'https://api.teletracker.net/auth/refresh',
    username: 'fleet-user',
    password: 'pw',
    ...extra,
  }) as SessionAuth;
}

/** The refresh builder needs a session account that has a refreshUrl. */
function refreshable(auth: SessionAuth): SessionAuth & { refreshUrl: string } {
  const { refreshUrl } = auth;
  if (refreshUrl === undefined) throw new Error('this account has no refreshUrl');
  return { ...auth, refreshUrl };
}

function oauth2Auth(extra: Record<string, unknown> = {}): OAuth2Auth {
  return authOf({
    flow: 'oauth2',
    tokenUrl: 'https://auth.example.com/token',
    clientId: SEED_004.clientId,
    clientSecret: SEED_004.clientSecret,
    ...extra,
  }) as OAuth2Auth;
}

function response(status: number, body: unknown, headers: Record<string, string> = {}): TokenHttpResponse {
  return { status, headers, body: typeof body === 'string' ? body : JSON.stringify(body) };
}

function jsonBody(body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>;
}

function success(parsed: ParsedTokenResponse) {
  if (parsed.outcome !== 'success') throw new Error(`expected success, got ${parsed.outcome}: ${parsed.reason}`);
  return parsed.token;
}

describe('§8 session dialect: requests', () => {
  it('§8: login is POST loginUrl with JSON {username, password, account_id} and Content-Type application/json', () => {
    const auth = sessionAuth({ accountId: 42 });
    const request = buildSessionLoginRequest(auth, new Secret('s3cret'));
    expect(request.url.href).toBe('https://api.teletracker.net/auth/login');
    expect(request.headers['content-type']).toBe('application/json');
    expect(jsonBody(request.body)).toEqual({ username: 'fleet-user', password: 's3cret', account_id: 42 });
  });

  it('§8: account_id is sent as a number when it is all digits ("42" and 42)', () => {
    expect(jsonBody(buildSessionLoginRequest(sessionAuth({ accountId: '42' }), new Secret('p')).body).account_id).toBe(
      42,
    );
    expect(jsonBody(buildSessionLoginRequest(sessionAuth({ accountId: 42 }), new Secret('p')).body).account_id).toBe(
      42,
    );
    expect(buildSessionLoginRequest(sessionAuth({ accountId: '42' }), new Secret('p')).body).toContain(
      '"account_id":42',
    );
  });

  it('§8: account_id is sent as a string when it is not all digits', () => {
    expect(jsonBody(buildSessionLoginRequest(sessionAuth({ accountId: 'abc' }), new Secret('p')).body).account_id).toBe(
      'abc',
    );
    expect(jsonBody(buildSessionLoginRequest(sessionAuth({ accountId: '-1' }), new Secret('p')).body).account_id).toBe(
      '-1',
    );
  });

  it('§8: account_id is left out when not configured', () => {
    const body = jsonBody(buildSessionLoginRequest(sessionAuth(), new Secret('p')).body);
    expect(body).toEqual({ username: 'fleet-user', password: 'p' });
    expect('account_id' in body).toBe(false);
  });

  it('§8: account_id from ${VAR} (a string of digits) is sent as a number', () => {
    const config = parseConfig(
      {
        accounts: {
          a: {
            upstream: 'https://api.example.net',
            auth: {
              flow: 'session',
              loginUrl: 'https://api.example.net/auth/login',
              username: 'u',
              password: 'p',
              accountId: '${ACCOUNT_ID}',
            },
          },
        },
      },
      { env: { ACCOUNT_ID: '1234' } },
    );
    const auth = config.accounts[0]?.auth as SessionAuth;
    expect(jsonBody(buildSessionLoginRequest(auth, new Secret('p')).body).account_id).toBe(1234);
  });

  it('§8: refresh is POST refreshUrl with JSON {refreshToken} and Content-Type application/json', () => {
    const request = buildSessionRefreshRequest(
      refreshable(sessionAuth()),
      new Secret(SEED_001_LOGIN_RESPONSE.refreshToken),
    );
    expect(request.url.href).toBe('https://api.teletracker.net/auth/refresh');
    expect(request.headers['content-type']).toBe('application/json');
    expect(jsonBody(request.body)).toEqual({ refreshToken: SEED_001_LOGIN_RESPONSE.refreshToken });
  });

  describe('§3 configuration', () => {
    it('§3: requestFields rename the login and refresh body fields', () => {
      const auth = sessionAuth({
        accountId: 7,
        requestFields: { username: 'user', password: 'pass', accountId: 'acct', refreshToken: 'rt' },
      });
      expect(jsonBody(buildSessionLoginRequest(auth, new Secret('p')).body)).toEqual({
        user: 'fleet-user',
        pass: 'p',
        acct: 7,
      });
      expect(jsonBody(buildSessionRefreshRequest(refreshable(auth), new Secret('r')).body)).toEqual({ rt: 'r' });
    });
  });

  describe('F6 no secret in any output', () => {
    it('F6: the login and refresh bodies carry the secrets (they must go on the wire)', async () => {
      const auth = sessionAuth({ password: 'wire-password' });
      const request = buildSessionLoginRequest(auth, await readSecret(auth.password));
      expect(request.body).toContain('wire-password');
      expect(buildSessionRefreshRequest(refreshable(auth), new Secret('wire-refresh')).body).toContain('wire-refresh');
    });
  });
});

describe('§8, T5 session dialect: responses', () => {
  it("§8: seed 001's login response parses to success with token, refresh token and lifetime hints", () => {
    const token = success(
      parseSessionResponse(
        sessionAuth(),
        response(200, SEED_001_LOGIN_RESPONSE, { date: 'Sun, 01 Apr 2018 20:39:12 GMT' }),
      ),
    );
    expect(token.accessToken.reveal()).toBe(SEED_001_LOGIN_RESPONSE.token);
    expect(token.refreshToken?.reveal()).toBe(SEED_001_LOGIN_RESPONSE.refreshToken);
    expect(token.lifetime).toEqual({
      lifetime: 3600,
      expiration: '2018-04-01T21:39:12+00:00',
      date: 'Sun, 01 Apr 2018 20:39:12 GMT',
    });
  });

  it('§8: a success: false body with HTTP 200 is a rejection', () => {
    const parsed = parseSessionResponse(
      sessionAuth(),
      response(200, { success: false, message: 'Invalid username or password' }),
    );
    expect(parsed.outcome).toBe('rejected');
  });

  it('§8: a success: false body is a rejection whatever the status (even 500)', () => {
    expect(parseSessionResponse(sessionAuth(), response(500, { success: false })).outcome).toBe('rejected');
  });

  it('T5: HTTP 500 is a transient error', () => {
    expect(parseSessionResponse(sessionAuth(), response(500, { message: 'oops' })).outcome).toBe('error');
    expect(parseSessionResponse(sessionAuth(), response(503, '')).outcome).toBe('error');
  });

  it('T5: 408 and 429 are transient errors, not rejections', () => {
    expect(parseSessionResponse(sessionAuth(), response(408, '')).outcome).toBe('error');
    expect(parseSessionResponse(sessionAuth(), response(429, '')).outcome).toBe('error');
  });

  it('T5: an HTML body with HTTP 200 is an error', () => {
    const parsed = parseSessionResponse(sessionAuth(), response(200, '<html><body>Maintenance</body></html>'));
    expect(parsed.outcome).toBe('error');
  });

  it('T5: an empty body with HTTP 200 is an error', () => {
    expect(parseSessionResponse(sessionAuth(), response(200, '')).outcome).toBe('error');
  });

  it('T5: HTTP 200 without a token is an error (incomplete body)', () => {
    const { token: _token, ...noToken } = SEED_001_LOGIN_RESPONSE;
    expect(parseSessionResponse(sessionAuth(), response(200, noToken)).outcome).toBe('error');
    expect(parseSessionResponse(sessionAuth(), response(200, { ...SEED_001_LOGIN_RESPONSE, token: '' })).outcome).toBe(
      'error',
    );
    expect(parseSessionResponse(sessionAuth(), response(200, { ...SEED_001_LOGIN_RESPONSE, token: 123 })).outcome).toBe(
      'error',
    );
  });

  describe('T4 a rejected refresh falls back to a login', () => {
    it('T4: HTTP 401 from the session API is a rejection', () => {
      expect(
        parseSessionResponse(sessionAuth(), response(401, { message: 'refresh token already used' })).outcome,
      ).toBe('rejected');
      expect(parseSessionResponse(sessionAuth(), response(403, '')).outcome).toBe('rejected');
    });
  });

  describe('T3 rotating refresh tokens', () => {
    it('T3: a response without a refresh token parses with refreshToken undefined', () => {
      const { refreshToken: _rt, ...noRefresh } = SEED_001_LOGIN_RESPONSE;
      expect(success(parseSessionResponse(sessionAuth(), response(200, noRefresh))).refreshToken).toBeUndefined();
    });
  });

  describe('§3 configuration', () => {
    it('§3: fields rename the response fields read', () => {
      const auth = sessionAuth({ fields: { token: 'bearer', tokenLifetime: 'ttl', refreshToken: 'next' } });
      const token = success(parseSessionResponse(auth, response(200, { bearer: 'b', ttl: 60, next: 'n' })));
      expect(token.accessToken.reveal()).toBe('b');
      expect(token.refreshToken?.reveal()).toBe('n');
      expect(token.lifetime.lifetime).toBe(60);
    });
  });

  describe('F6 no secret in any output', () => {
    it('F6: JSON.stringify of a parsed session response does not contain the token or the refresh token', () => {
      const parsed = parseSessionResponse(sessionAuth(), response(200, SEED_001_LOGIN_RESPONSE));
      const text = JSON.stringify(parsed);
      expect(text).not.toContain(SEED_001_LOGIN_RESPONSE.token);
      expect(text).not.toContain(SEED_001_LOGIN_RESPONSE.refreshToken);
    });
  });
});

describe('§8 oauth2 dialect: requests (seeds 002 and 004)', () => {
  const seedJson = { clientAuth: 'body', bodyEncoding: 'json' } as const;
  it('§8: seed 004 client_credentials (JSON body, clientAuth body) sends exactly grant_type, client_id, client_secret', async () => {
    const auth = oauth2Auth(seedJson);
    const clientSecret = auth.clientSecret === undefined ? undefined : await readSecret(auth.clientSecret);
    const request = buildOAuth2TokenRequest(auth, 'client_credentials', { clientSecret });
    expect(request.url.href).toBe('https://auth.example.com/token');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers.authorization).toBeUndefined();
    expect(jsonBody(request.body)).toEqual({
      grant_type: 'client_credentials',
      client_id: 'BA779C49-4D93-4785-9596-25805A24C5DC',
      client_secret: '4AD3CE00-8ED5-4F0A-A979-ACE64A15207C',
    });
  });

  it('§8: seed 004 password grant (JSON body, clientAuth body) sends exactly grant_type, client_id, client_secret, username, password', () => {
    const auth = oauth2Auth({
      ...seedJson,
      grant: 'password',
      username: SEED_004.username,
      password: SEED_004.password,
    });
    const request = buildOAuth2TokenRequest(auth, 'password', {
      clientSecret: new Secret(SEED_004.clientSecret),
      password: new Secret(SEED_004.password),
    });
    expect(jsonBody(request.body)).toEqual({
      grant_type: 'password',
      client_id: 'BA779C49-4D93-4785-9596-25805A24C5DC',
      client_secret: '4AD3CE00-8ED5-4F0A-A979-ACE64A15207C',
      username: 'jsmith',
      password: 'password123',
    });
  });

  it('§8: seed 004 refresh_token grant (JSON body, clientAuth body) sends exactly grant_type, client_id, client_secret, refresh_token', () => {
    const auth = oauth2Auth(seedJson);
    const request = buildOAuth2TokenRequest(auth, 'refresh_token', {
      clientSecret: new Secret(SEED_004.clientSecret),
      refreshToken: new Secret(SEED_004.refreshToken),
    });
    expect(jsonBody(request.body)).toEqual({
      grant_type: 'refresh_token',
      client_id: 'BA779C49-4D93-4785-9596-25805A24C5DC',
      client_secret: '4AD3CE00-8ED5-4F0A-A979-ACE64A15207C',
      // The seed's token ends in a literal "%3d": sent verbatim in JSON, never decoded.
      refresh_token: SEED_004.refreshToken,
    });
  });

  it('§8: in a form body the refresh token is form-encoded ("%3d" becomes "%253d") and decodes back to itself', () => {
    const auth = oauth2Auth({ clientAuth: 'body' });
    const request = buildOAuth2TokenRequest(auth, 'refresh_token', {
      clientSecret: new Secret(SEED_004.clientSecret),
      refreshToken: new Secret(SEED_004.refreshToken),
    });
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(request.body).toContain('%253d');
    expect(new URLSearchParams(request.body).get('refresh_token')).toBe(SEED_004.refreshToken);
  });

  it('§8: clientAuth basic puts the client in Authorization, not in the body', () => {
    const request = buildOAuth2TokenRequest(oauth2Auth(), 'client_credentials', {
      clientSecret: new Secret(SEED_004.clientSecret),
    });
    const expected = Buffer.from(`${SEED_004.clientId}:${SEED_004.clientSecret}`).toString('base64');
    expect(request.headers.authorization).toBe(`Basic ${expected}`);
    const form = new URLSearchParams(request.body);
    expect(form.get('grant_type')).toBe('client_credentials');
    expect(form.has('client_id')).toBe(false);
    expect(form.has('client_secret')).toBe(false);
  });

  it('§8: clientAuth basic follows RFC 6749 §2.3.1: id and secret are form-encoded, then Base64', () => {
    const id = 'my app:1%+é';
    const secret = 's p:a%c+e/ü';
    const header = basicClientAuthorization(id, new Secret(secret));
    expect(header.startsWith('Basic ')).toBe(true);
    const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
    expect(decoded).toBe('my+app%3A1%25%2B%C3%A9:s+p%3Aa%25c%2Be%2F%C3%BC');
    // Exactly one raw ":" separates id and secret, and each side decodes back.
    const [encodedId, encodedSecret, ...rest] = decoded.split(':');
    expect(rest).toEqual([]);
    expect(new URLSearchParams(`v=${encodedId}`).get('v')).toBe(id);
    expect(new URLSearchParams(`v=${encodedSecret}`).get('v')).toBe(secret);
  });

  it("§8: seed 002's /authorization (grant password, bodyEncoding form, extraParams {grant_type: null}) sends username=..&password=.. with no grant_type", () => {
    const auth = authOf({
      flow: 'oauth2',
      tokenUrl: 'https://platform.example/authorization',
      grant: 'password',
      bodyEncoding: 'form',
      username: 'me@example.com',
      password: 'p&ss w=rd',
      extraParams: { grant_type: null },
    }) as OAuth2Auth;
    const request = buildOAuth2TokenRequest(auth, 'password', { password: new Secret('p&ss w=rd') });
    expect(request.url.pathname).toBe('/authorization');
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(request.headers.authorization).toBeUndefined();
    expect(request.body).toBe('username=me%40example.com&password=p%26ss+w%3Drd');
    expect(new URLSearchParams(request.body).has('grant_type')).toBe(false);
  });

  describe('§3 configuration', () => {
    it('§3: extraParams override defaults and add fields', () => {
      const auth = oauth2Auth({
        clientAuth: 'body',
        extraParams: { grant_type: 'urn:custom', resource: 'https://api.example' },
      });
      const form = new URLSearchParams(
        buildOAuth2TokenRequest(auth, 'client_credentials', { clientSecret: new Secret('x') }).body,
      );
      expect(form.get('grant_type')).toBe('urn:custom');
      expect(form.get('resource')).toBe('https://api.example');
      expect(form.get('client_id')).toBe(SEED_004.clientId);
    });

    it('§3: scope and audience are included when configured', () => {
      const auth = oauth2Auth({ scope: 'read write', audience: 'https://api.crm.example' });
      const form = new URLSearchParams(
        buildOAuth2TokenRequest(auth, 'client_credentials', { clientSecret: new Secret('x') }).body,
      );
      expect(form.get('scope')).toBe('read write');
      expect(form.get('audience')).toBe('https://api.crm.example');
      const bare = new URLSearchParams(
        buildOAuth2TokenRequest(oauth2Auth(), 'client_credentials', { clientSecret: new Secret('x') }).body,
      );
      expect(bare.has('scope')).toBe(false);
      expect(bare.has('audience')).toBe(false);
    });
  });

  describe('F6 no secret in any output', () => {
    it('F6: built requests carry the secrets (they go on the wire)', () => {
      const auth = oauth2Auth({
        clientAuth: 'body',
        grant: 'password',
        username: SEED_004.username,
        password: SEED_004.password,
      });
      const request = buildOAuth2TokenRequest(auth, 'password', {
        clientSecret: new Secret(SEED_004.clientSecret),
        password: new Secret(SEED_004.password),
      });
      expect(request.body).toContain(SEED_004.password);
      expect(request.body).toContain(SEED_004.clientSecret);
      const basic = buildOAuth2TokenRequest(oauth2Auth(), 'client_credentials', {
        clientSecret: new Secret(SEED_004.clientSecret),
      });
      expect(Buffer.from(basic.headers.authorization?.slice(6) ?? '', 'base64').toString()).toContain(
        SEED_004.clientSecret,
      );
    });
  });
});

describe('T4, T5 oauth2 dialect: responses', () => {
  describe('T1 expiry on the local clock', () => {
    it('T1: access_token + expires_in + refresh_token is a success with the lifetime hint and the Date header', () => {
      const token = success(
        parseOAuth2Response(
          response(
            200,
            { access_token: 'at-1', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt-1' },
            { date: 'Mon, 01 Jan 2024 00:00:00 GMT' },
          ),
        ),
      );
      expect(token.accessToken.reveal()).toBe('at-1');
      expect(token.refreshToken?.reveal()).toBe('rt-1');
      expect(token.lifetime).toEqual({ lifetime: 3600, expiration: undefined, date: 'Mon, 01 Jan 2024 00:00:00 GMT' });
    });
  });

  describe('§8 edge-case decisions', () => {
    it('§8: a response without refresh_token parses with refreshToken undefined', () => {
      expect(
        success(parseOAuth2Response(response(200, { access_token: 'at', expires_in: 60 }))).refreshToken,
      ).toBeUndefined();
    });
  });

  it('T4: {"error":"invalid_grant"} with 400 is a rejection', () => {
    const parsed = parseOAuth2Response(
      response(400, { error: 'invalid_grant', error_description: 'refresh token revoked' }),
    );
    expect(parsed).toMatchObject({ outcome: 'rejected', reason: expect.stringContaining('invalid_grant') as string });
  });

  it('T5: {"error":"invalid_client"} with 401 is a rejection', () => {
    expect(parseOAuth2Response(response(401, { error: 'invalid_client' })).outcome).toBe('rejected');
  });

  it('T5: 503 is a transient error', () => {
    expect(parseOAuth2Response(response(503, '<html>Service Unavailable</html>')).outcome).toBe('error');
  });

  it('T5: 429 is a transient error, not a rejection', () => {
    expect(parseOAuth2Response(response(429, { error: 'slow_down' })).outcome).toBe('error');
    expect(parseOAuth2Response(response(429, '')).outcome).toBe('error');
  });

  it('T5: 200 without access_token is an error', () => {
    expect(parseOAuth2Response(response(200, { token_type: 'Bearer', expires_in: 3600 })).outcome).toBe('error');
    expect(parseOAuth2Response(response(200, { access_token: '' })).outcome).toBe('error');
  });

  it('T5: an empty or HTML 200 body is an error', () => {
    expect(parseOAuth2Response(response(200, '')).outcome).toBe('error');
    expect(parseOAuth2Response(response(200, '<html></html>')).outcome).toBe('error');
  });

  describe('F6 no secret in any output', () => {
    it('F6: JSON.stringify of a parsed oauth2 response does not contain the access or refresh token', () => {
      const accessToken = 'eyJhbGciOiJub25lIn0.access-token-value.sig';
      const refreshToken = 'refresh-token-value-123';
      const parsed = parseOAuth2Response(
        response(200, { access_token: accessToken, refresh_token: refreshToken, expires_in: 60 }),
      );
      expect(parsed.outcome).toBe('success');
      const text = JSON.stringify(parsed);
      expect(text).not.toContain(accessToken);
      expect(text).not.toContain(refreshToken);
      expect(text).toContain('[redacted]');
    });
  });
});
