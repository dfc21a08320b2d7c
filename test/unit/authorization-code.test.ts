import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { OAuth2Auth } from '../../src/config/resolve.js';
import {
  buildAuthorizationCodeRequest,
  buildAuthorizeUrl,
  createOAuth2Flow,
  pkceChallenge,
} from '../../src/flows/oauth2.js';
import { CredentialUnavailableError } from '../../src/flows/types.js';
import { Secret } from '../../src/util/secret.js';

/* Seed 004: the example client. */
const CLIENT_ID = 'BA779C49-4D93-4785-9596-25805A24C5DC';
const CLIENT_SECRET = '4AD3CE00-8ED5-4F0A-A979-ACE64A15207C';
const REDIRECT = 'http://127.0.0.1:53682/callback';

function oauth2Auth(
  extra: Record<string, unknown> = {},
  store: Record<string, unknown> = { type: 'memory' },
): OAuth2Auth {
  const config = parseConfig(
    {
      store,
      accounts: {
        crm: {
          upstream: 'https://api.crm.example',
          auth: {
            flow: 'oauth2',
            tokenUrl: 'https://auth.crm.example/token',
            authorizeUrl: 'https://auth.crm.example/authorize?prompt=consent',
            clientId: CLIENT_ID,
            ...extra,
          },
        },
      },
    },
    { env: {} },
  );
  return config.accounts[0]?.auth as OAuth2Auth;
}

const grant = {
  code: 'the-code',
  redirectUri: REDIRECT,
  codeVerifier: new Secret('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'),
};

describe('authorization_code grant (seed 004, RFC 6749 §4.1, RFC 7636)', () => {
  it('RFC 7636 appendix B: the S256 challenge of the example verifier', () => {
    expect(pkceChallenge(new Secret('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'))).toBe(
      'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    );
  });

  it('seed 004: clientAuth body and bodyEncoding json put the client id and secret in a JSON body', () => {
    const request = buildAuthorizationCodeRequest(oauth2Auth({ clientAuth: 'body', bodyEncoding: 'json' }), grant, {
      clientSecret: new Secret(CLIENT_SECRET),
    });
    expect(request.headers.authorization).toBeUndefined();
    expect(request.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request.body)).toEqual({
      grant_type: 'authorization_code',
      code: 'the-code',
      redirect_uri: REDIRECT,
      code_verifier: grant.codeVerifier.reveal(),
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    });
  });
});

describe('§2 commands', () => {
  it('§2 authorize: the URL carries response_type, client_id, redirect_uri, scope, state and an S256 challenge, keeping the endpoint own query', () => {
    const url = buildAuthorizeUrl(
      {
        ...oauth2Auth({ scope: 'openid offline_access' }),
        authorizeUrl: 'https://auth.crm.example/authorize?prompt=consent',
      },
      {
        redirectUri: REDIRECT,
        state: 'st4te',
        codeChallenge: 'chal',
      },
    );
    expect(url.origin + url.pathname).toBe('https://auth.crm.example/authorize');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      prompt: 'consent',
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT,
      scope: 'openid offline_access',
      state: 'st4te',
      code_challenge: 'chal',
      code_challenge_method: 'S256',
    });
  });

  it('§2 authorize / §8: the code exchange uses clientAuth basic as configured (RFC 6749 §2.3.1) with a form body', () => {
    const request = buildAuthorizationCodeRequest(oauth2Auth(), grant, { clientSecret: new Secret(CLIENT_SECRET) });
    expect(request.url.href).toBe('https://auth.crm.example/token');
    expect(request.headers.authorization).toBe(
      `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
    );
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(request.body))).toEqual({
      grant_type: 'authorization_code',
      code: 'the-code',
      redirect_uri: REDIRECT,
      code_verifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk',
    });
  });

  it('§2 authorize: the verifier is the only secret in the request; the challenge is its hash, not the verifier', () => {
    const verifier = new Secret('v'.repeat(43));
    expect(pkceChallenge(verifier)).toBe(createHash('sha256').update('v'.repeat(43)).digest('base64url'));
    expect(pkceChallenge(verifier)).not.toContain('vvvv');
  });
});

describe('§4 token behaviour', () => {
  it('RFC 6749 §4.1.3: a public client (no secret) sends its client_id in the body, never Basic with an empty secret', () => {
    const request = buildAuthorizationCodeRequest(oauth2Auth(), grant, {});
    expect(request.headers.authorization).toBeUndefined();
    expect(new URLSearchParams(request.body).get('client_id')).toBe(CLIENT_ID);
  });
});

describe('§3 configuration', () => {
  it('§3: extraParams apply to the code exchange too', () => {
    const request = buildAuthorizationCodeRequest(
      oauth2Auth({ extraParams: { resource: 'https://api.crm.example' } }),
      grant,
      { clientSecret: new Secret(CLIENT_SECRET) },
    );
    expect(new URLSearchParams(request.body).get('resource')).toBe('https://api.crm.example');
  });
});

describe('T4 a rejected refresh falls back to a login', () => {
  it('T4: grant refresh_token with the chain in a file/redis store needs no configured refresh token; with none stored the account says how to get one', async () => {
    const auth = oauth2Auth({ grant: 'refresh_token' }, { type: 'file', path: '/tmp/bs-unused-state.json' });
    expect(auth.refreshToken).toBeUndefined();
    await expect(createOAuth2Flow(auth).buildInitialRequest()).rejects.toBeInstanceOf(CredentialUnavailableError);
    await expect(createOAuth2Flow(auth).buildInitialRequest()).rejects.toThrow(/bearer-sidecar authorize/);
    expect(() => oauth2Auth({ grant: 'refresh_token' })).toThrow(
      /accounts\.crm\.auth\.refreshToken: required for grant refresh_token with the memory store/,
    );
  });
});
