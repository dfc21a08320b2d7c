import { describe, expect, it } from 'vitest';
import { TokenTransportError } from '../../src/flows/http-client.js';
import { parseOAuth2Response } from '../../src/flows/oauth2.js';
import {
  CredentialUnavailableError,
  type TokenHttpRequest,
  type TokenHttpResponse,
  type TokenRequestKind,
} from '../../src/flows/types.js';
import { exchangeToken, type ExchangeResult, type ExchangeSteps } from '../../src/tokens/exchange.js';
import { Secret } from '../../src/util/secret.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SECOND = 1000;
const POLICY = { defaultLifetimeMs: 300 * SECOND, maxLifetimeMs: 24 * 3600 * SECOND, minIntervalMs: 5 * SECOND };

function answer(status: number, body: object, headers: Record<string, string> = {}): TokenHttpResponse {
  return { status, headers, body: JSON.stringify(body) };
}

function tokenRequest(refreshToken?: Secret): TokenHttpRequest {
  return {
    url: new URL('http://token.test/token'),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: refreshToken === undefined ? 'grant_type=client_credentials' : 'grant_type=refresh_token',
    secrets: [new Secret('client-secret'), ...(refreshToken === undefined ? [] : [refreshToken])],
  };
}

/** One exchange against an answer (or a throw), on a fake clock; records what was sent. */
async function exchange(options: {
  respond: () => TokenHttpResponse | Promise<TokenHttpResponse>;
  kind?: TokenRequestKind;
  spends?: Secret;
  steps?: Partial<ExchangeSteps>;
}): Promise<{ result: ExchangeResult; sent: number; onSend: number[]; clock: FakeClock }> {
  const clock = new FakeClock();
  const calls = { sent: 0, onSend: [] as number[] };
  let monotonic = 1_000;
  const result = await exchangeToken(
    {
      build: async () => ({
        kind: options.kind ?? (options.spends === undefined ? 'login' : 'refresh'),
        request: tokenRequest(options.spends),
        spends: options.spends,
      }),
      send: async () => {
        calls.sent += 1;
        monotonic += 250;
        return options.respond();
      },
      parse: (response, secrets) => parseOAuth2Response(response, secrets),
      rotatesRefreshTokens: false,
      onSend: (sentAt) => calls.onSend.push(sentAt),
      ...options.steps,
    },
    { clock, policy: POLICY, monotonicNow: () => monotonic },
  );
  return { result, sent: calls.sent, onSend: calls.onSend, clock };
}

describe('T1 expiry on the local clock', () => {
  it('T1: the new state expires the lifetime after the exchange began, on the local clock; a server clock 2 h ahead is measured, not used', async () => {
    const clock = new FakeClock();
    const serverDate = new Date(clock.now() + 2 * 3600 * SECOND).toUTCString();
    const { result, onSend } = await exchange({
      respond: () =>
        answer(200, { access_token: 'tok-1', token_type: 'Bearer', expires_in: 600 }, { date: serverDate }),
    });
    if (result.outcome !== 'success') throw new Error(result.outcome);
    expect(result.sentAt).toBe(clock.now());
    expect(onSend).toEqual([clock.now()]);
    expect(result.state).toMatchObject({
      obtainedAt: clock.now(),
      expiresAt: clock.now() + 600 * SECOND,
      lifetimeMs: 600 * SECOND,
      refreshToken: undefined,
    });
    expect(result.state.accessToken.reveal()).toBe('tok-1');
    expect(result.lifetime).toMatchObject({ source: 'lifetime', anomalies: [], skewMs: 2 * 3600 * SECOND });
    expect(result).toMatchObject({ kind: 'login', httpStatus: 200, durationMs: 250, spentRefreshToken: undefined });
  });

  it('T1, §8: an odd lifetime falls through to defaultLifetime and is reported as an anomaly', async () => {
    const { result } = await exchange({ respond: () => answer(200, { access_token: 'tok-1', expires_in: 'abc' }) });
    if (result.outcome !== 'success') throw new Error(result.outcome);
    expect(result.lifetime).toMatchObject({ source: 'default', anomalies: ['invalid'], lifetimeMs: 300 * SECOND });
    expect(result.state.expiresAt - result.state.obtainedAt).toBe(300 * SECOND);
  });
});

describe('T3 rotating refresh tokens', () => {
  it("T3: a rotated refresh token is the new state's, and the one sent is spent", async () => {
    const sent = new Secret('ref-1');
    const { result } = await exchange({
      spends: sent,
      respond: () => answer(200, { access_token: 'tok-2', refresh_token: 'ref-2', expires_in: 60 }),
    });
    if (result.outcome !== 'success') throw new Error(result.outcome);
    expect(result.state.refreshToken?.reveal()).toBe('ref-2');
    expect(result.sentRefreshToken).toBe(sent);
    expect(result.spentRefreshToken).toBe(sent);
  });

  it('T3: an OAuth 2 server that keeps the refresh token (none issued, or the same one again): it stays, nothing is spent', async () => {
    const sent = new Secret('ref-1');
    for (const body of [{ access_token: 'tok-2' }, { access_token: 'tok-2', refresh_token: 'ref-1' }]) {
      const { result } = await exchange({ spends: sent, respond: () => answer(200, body) });
      if (result.outcome !== 'success') throw new Error(result.outcome);
      expect(result.state.refreshToken?.reveal()).toBe('ref-1');
      expect(result.spentRefreshToken).toBeUndefined();
    }
  });

  it('T3: a dialect that rotates on every refresh (session) has spent the token sent even when no new one came', async () => {
    const sent = new Secret('ref-1');
    const { result } = await exchange({
      spends: sent,
      steps: { rotatesRefreshTokens: true },
      respond: () => answer(200, { access_token: 'tok-2' }),
    });
    if (result.outcome !== 'success') throw new Error(result.outcome);
    expect(result.state.refreshToken).toBeUndefined();
    expect(result.spentRefreshToken).toBe(sent);
  });

  it('T3: a login that issues a refresh token spends nothing', async () => {
    const { result } = await exchange({
      respond: () => answer(200, { access_token: 'tok-1', refresh_token: 'ref-1' }),
    });
    expect(result.outcome === 'success' && result.state.refreshToken?.reveal()).toBe('ref-1');
    expect(result.outcome === 'success' && result.spentRefreshToken).toBeUndefined();
  });

  it('T3, T4: a rejected refresh token is spent', async () => {
    const sent = new Secret('ref-1');
    const { result } = await exchange({
      spends: sent,
      respond: () => answer(400, { error: 'invalid_grant', error_description: 'revoked' }),
    });
    expect(result).toMatchObject({
      outcome: 'rejected',
      reason: 'invalid_grant: revoked',
      httpStatus: 400,
      spentRefreshToken: sent,
    });
  });

  it('T3: a request that would spend a refresh token already spent is not sent', async () => {
    const { result, sent, onSend } = await exchange({
      spends: new Secret('ref-1'),
      steps: { isSpent: (token) => token.reveal() === 'ref-1' },
      respond: () => answer(200, {}),
    });
    expect(result).toMatchObject({ outcome: 'already_spent', reason: expect.stringMatching(/already used/) });
    expect(sent).toBe(0);
    expect(onSend).toEqual([]);
  });
});

describe('R1 header-safe token values', () => {
  it('R1, T3: an answer whose token cannot travel in a header is an error that spent the refresh token sent', async () => {
    const sent = new Secret('ref-1');
    const { result } = await exchange({
      spends: sent,
      respond: () => answer(200, { access_token: 'tok\n1', refresh_token: 'ref-2' }),
    });
    expect(result).toMatchObject({ outcome: 'error', delivered: true, spentRefreshToken: sent, thrown: undefined });
    expect(result.outcome === 'error' && result.reason).toMatch(/token not header-safe/);
  });
});

describe('T5 transient failures back off', () => {
  it('T5: an unclear answer (5xx) reached the server but spent nothing for certain', async () => {
    const sent = new Secret('ref-1');
    const { result } = await exchange({ spends: sent, respond: () => answer(502, {}) });
    expect(result).toMatchObject({
      outcome: 'error',
      reason: 'HTTP 502',
      delivered: true,
      spentRefreshToken: undefined,
      retryAfterMs: undefined,
    });
  });

  it('E6: a request an egress proxy refused (407) never reached the token server: it spent nothing', async () => {
    const refused = await exchange({
      spends: new Secret('ref-1'),
      respond: () =>
        Promise.reject(new TokenTransportError('proxy_refused', 'via proxy http://p:1: the proxy answered 407')),
    });
    expect(refused.result).toMatchObject({ outcome: 'error', delivered: false, spentRefreshToken: undefined });
  });

  it('T5: a refused connection never reached the server; a timeout may have. Neither spent the refresh token for certain', async () => {
    const sent = new Secret('ref-1');
    const refused = await exchange({
      spends: sent,
      respond: () => Promise.reject(new TokenTransportError('ECONNREFUSED', 'connection refused')),
    });
    expect(refused.result).toMatchObject({
      outcome: 'error',
      reason: 'connection refused',
      delivered: false,
      httpStatus: undefined,
      spentRefreshToken: undefined,
      durationMs: 250,
    });
    expect(refused.result.outcome === 'error' && refused.result.thrown).toBeInstanceOf(TokenTransportError);
    const timedOut = await exchange({
      spends: sent,
      respond: () => Promise.reject(new TokenTransportError('timeout', 'no answer within 10000ms')),
    });
    expect(timedOut.result).toMatchObject({ outcome: 'error', delivered: true, spentRefreshToken: undefined });
  });
});

describe('R2 token responses', () => {
  it('R2: a 429 or 503 with Retry-After says how long the next attempt waits', async () => {
    const { result } = await exchange({ respond: () => answer(429, { error: 'slow_down' }, { 'retry-after': '20' }) });
    expect(result).toMatchObject({ outcome: 'error', retryAfterMs: 20 * SECOND });
  });
});

describe('R4 server-provided text', () => {
  it("R4: server text is scrubbed of the request's secrets and of those the account holds", async () => {
    const held = new Secret('held-access-token');
    const { result } = await exchange({
      steps: { heldSecrets: [held, undefined] },
      respond: () =>
        answer(401, { error: 'invalid_client', error_description: 'client-secret and held-access-token are wrong' }),
    });
    expect(result.outcome === 'rejected' && result.reason).toBe('invalid_client: [redacted] and [redacted] are wrong');
    const thrown = await exchange({
      steps: { heldSecrets: [held] },
      respond: () => Promise.reject(new Error('bad header: held-access-token')),
    });
    expect(thrown.result).toMatchObject({ outcome: 'error', reason: 'request failed: bad header: [redacted]' });
  });
});

describe('§8 edge-case decisions', () => {
  it('§8: a secret that cannot be read is a rejected login: nothing is sent, and the reason says why', async () => {
    const unreadable = await exchange({
      steps: { build: () => Promise.reject(new Error('EACCES: /secrets/password')) },
      respond: () => answer(200, {}),
    });
    expect(unreadable.result).toMatchObject({
      outcome: 'unbuildable',
      reason: 'cannot read a secret: EACCES: /secrets/password',
    });
    expect(unreadable.sent).toBe(0);
    const missing = await exchange({
      steps: { build: () => Promise.reject(new CredentialUnavailableError('no refresh token')) },
      respond: () => answer(200, {}),
    });
    expect(missing.result).toMatchObject({
      outcome: 'unbuildable',
      reason: 'no refresh token',
      error: expect.any(CredentialUnavailableError),
    });
  });
});
