import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { closeServer } from '../../src/util/http-server.js';

/**
 * A real third-party OAuth 2 / OpenID Connect authorization server (node-oidc-provider) on a
 * loopback port, for `bearer-sidecar authorize` end to end: PKCE enforced, a native client whose
 * loopback redirect may use any port (RFC 8252 §7.3), rotating refresh tokens, and its own
 * userinfo endpoint (`/me`) as an upstream that accepts only the access tokens it issued.
 */
export interface TestAuthorizationServer {
  issuer: string;
  clientId: string;
  clientSecret: string;
  close(): Promise<void>;
}

export async function startAuthorizationServer(
  options: { accessTokenTtlSeconds?: number } = {},
): Promise<TestAuthorizationServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientId = 'bearer-sidecar-test';
  const clientSecret = randomBytes(24).toString('base64url');
  const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [{ ...signingKey, use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { methods: ['S256'], required: () => true },
    // The seed's server issues a refresh token with every code, and a fresh one with every refresh.
    issueRefreshToken: () => Promise.resolve(true),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: options.accessTokenTtlSeconds ?? 120,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 86_400,
      IdToken: 3600,
    },
    features: { devInteractions: { enabled: true } },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  });
  server.on('request', provider.callback());
  return {
    issuer,
    clientId,
    clientSecret,
    close: () => closeServer(server, { force: true }),
  };
}

/** A browser's cookie jar, reduced to what the provider needs: name=value, sent everywhere on the host. */
class CookieJar {
  readonly #cookies = new Map<string, string>();

  take(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair?.indexOf('=') ?? -1;
      if (pair === undefined || eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

/**
 * Plays the user in a browser with plain HTTP requests: opens the authorization URL, signs in on
 * the provider's login form, approves the consent form, and follows the redirect back to the
 * loopback listener. `decision: 'deny'` aborts at the login instead. Returns the final response.
 */
export async function signInAndConsent(
  authorizeUrl: string,
  user: { login: string; password: string },
  decision: 'approve' | 'deny' = 'approve',
): Promise<Response> {
  const jar = new CookieJar();
  let url = authorizeUrl;
  let method: 'GET' | 'POST' = 'GET';
  let body: string | undefined;
  for (let hop = 0; hop < 20; hop++) {
    const response = await fetch(url, {
      method,
      redirect: 'manual',
      headers: {
        cookie: jar.header(),
        ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
      },
      body,
    });
    jar.take(response);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location !== null) {
      url = new URL(location, url).href;
      method = 'GET';
      body = undefined;
      continue;
    }
    const page = await response.text();
    const prompt = /name="prompt" value="(\w+)"/.exec(page)?.[1];
    if (response.status !== 200 || prompt === undefined)
      return new Response(page, { status: response.status, headers: response.headers });
    if (prompt === 'login' && decision === 'deny') {
      url = `${url.replace(/\/$/, '')}/abort`;
      method = 'GET';
      body = undefined;
      continue;
    }
    // The provider's own form: POST back to the same interaction URL.
    method = 'POST';
    body = new URLSearchParams(
      prompt === 'login' ? { prompt, login: user.login, password: user.password } : { prompt },
    ).toString();
  }
  throw new Error('too many redirects in the sign-in');
}
