import { afterEach, describe, expect, it } from 'vitest';
import {
  startSessionTokenServer,
  type SessionTokenServer,
  type SessionTokenServerOptions,
} from '../../src/demo/session-token-server.js';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.js';

// A fixed start keeps ISO strings readable in failure output; tests move it by hand, never sleep.
const START = Date.parse('2030-01-01T00:00:00Z');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let clock = START;
const opened: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((server) => server.close()));
  clock = START;
});

async function tokenServer(overrides: Partial<SessionTokenServerOptions> = {}): Promise<SessionTokenServer> {
  const server = await startSessionTokenServer({
    username: 'demo',
    password: 's3cret',
    lifetimeSeconds: 60,
    now: () => clock,
    ...overrides,
  });
  opened.push(server);
  return server;
}

async function upstreamFor(server: SessionTokenServer): Promise<DemoUpstream> {
  const upstream = await startDemoUpstream({ isValidToken: (token) => server.isValidToken(token) });
  opened.push(upstream);
  return upstream;
}

async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; date: string | null; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    date: response.headers.get('date'),
    json: (await response.json()) as Record<string, unknown>,
  };
}

function login(server: SessionTokenServer, password = 's3cret') {
  return postJson(server.loginUrl, { username: 'demo', password });
}

describe('demo session token server', () => {
  it('the demo outage switch: while on, every token request gets 503; off again, logins work; without the option there is no switch', async () => {
    const server = await tokenServer({ outageSwitch: true });
    expect(server.outageUrl).toBe(`${server.url}/demo/outage`);
    const outage = async (on: boolean) =>
      (await fetch(`${server.outageUrl}?on=${on ? 1 : 0}`, { method: 'POST' })).status;
    expect(await outage(true)).toBe(200);
    const down = await login(server);
    expect(down.status).toBe(503);
    expect(down.json.success).toBeUndefined(); // a server fault, not a rejection of the credentials
    expect((await postJson(server.refreshUrl, { refreshToken: 'x' })).status).toBe(503);
    expect(await outage(false)).toBe(200);
    expect((await login(server)).status).toBe(200);
    const plain = await tokenServer();
    expect(plain.outageUrl).toBeUndefined();
    expect((await fetch(`${plain.url}/demo/outage?on=1`, { method: 'POST' })).status).toBe(404);
  });

  it('answers a login in the shape of seed 001, with tokenLifetime', async () => {
    const server = await tokenServer();
    const { status, json } = await login(server);
    expect(status).toBe(200);
    expect(json).toMatchObject({ success: true, tokenLifetime: 60 });
    for (const field of ['guid', 'token', 'refreshToken']) expect(json[field]).toMatch(UUID);
    expect(Date.parse(json.tokenExpiration as string)).toBe(START + 60_000);
    expect(Date.parse(json.refreshTokenExpiration as string)).toBe(START + 30 * 24 * 3600_000);
    expect(server.isValidToken(json.token as string)).toBe(true);
    expect(server.stats).toMatchObject({ logins: 1, requests: 1, rejectedLogins: 0 });
  });

  it('rejects a wrong password with 401 and success: false', async () => {
    const server = await tokenServer();
    const { status, json } = await login(server, 'wrong');
    expect(status).toBe(401);
    expect(json).toEqual({ success: false, message: 'invalid credentials' });
    expect(server.stats).toMatchObject({ logins: 0, rejectedLogins: 1 });
  });

  it('requires the configured account_id as a number', async () => {
    const server = await tokenServer({ accountId: 42 });
    expect((await postJson(server.loginUrl, { username: 'demo', password: 's3cret', account_id: '42' })).status).toBe(
      401,
    );
    expect((await postJson(server.loginUrl, { username: 'demo', password: 's3cret', account_id: 42 })).status).toBe(
      200,
    );
  });

  it('rotates refresh tokens and refuses a used one', async () => {
    const server = await tokenServer();
    const first = (await login(server)).json;
    const refreshed = await postJson(server.refreshUrl, { refreshToken: first.refreshToken });
    expect(refreshed.status).toBe(200);
    expect(refreshed.json).toMatchObject({ success: true, guid: first.guid });
    expect(refreshed.json.token).not.toBe(first.token);
    expect(refreshed.json.refreshToken).not.toBe(first.refreshToken);

    const reused = await postJson(server.refreshUrl, { refreshToken: first.refreshToken });
    expect(reused.status).toBe(401);
    expect(reused.json).toEqual({ success: false, message: 'refresh token already used' });
    expect(server.stats).toMatchObject({ refreshes: 1, refreshTokenReuse: 1, rejectedRefreshes: 1 });

    // The rotated token still works: reuse of the old one does not poison the chain.
    expect((await postJson(server.refreshUrl, { refreshToken: refreshed.json.refreshToken })).status).toBe(200);
  });

  it('rejects an unknown refresh token without counting it as reuse', async () => {
    const server = await tokenServer();
    const { status, json } = await postJson(server.refreshUrl, { refreshToken: 'never-issued' });
    expect(status).toBe(401);
    expect(json.success).toBe(false);
    expect(server.stats).toMatchObject({ rejectedRefreshes: 1, refreshTokenReuse: 0 });
  });

  it('answers bad JSON with 400 and other paths with 404', async () => {
    const server = await tokenServer();
    const bad = await fetch(server.loginUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{not json',
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ success: false, message: 'bad request' });
    expect((await fetch(`${server.url}/elsewhere`)).status).toBe(404);
    expect(server.stats.requests).toBe(2);
  });

  it('shows a +2h clock skew in Date and tokenExpiration, while validity follows the local clock', async () => {
    const skewMs = 2 * 3600_000;
    const server = await tokenServer({ clockSkewMs: skewMs });
    const { date, json } = await login(server);
    expect(date).toBe(new Date(START + skewMs).toUTCString());
    expect(Date.parse(json.tokenExpiration as string)).toBe(START + skewMs + 60_000);

    const token = json.token as string;
    clock = START + 59_000;
    expect(server.isValidToken(token)).toBe(true);
    clock = START + 60_000;
    expect(server.isValidToken(token)).toBe(false);
  });

  it('sends lifetimeField verbatim instead of the real lifetime', async () => {
    const server = await tokenServer({ lifetimeField: 'abc' });
    const { json } = await login(server);
    expect(json.tokenLifetime).toBe('abc');
    // The token still lives for the real lifetimeSeconds.
    expect(Date.parse(json.tokenExpiration as string)).toBe(START + 60_000);
  });

  it('leaves tokenLifetime out with omitLifetime', async () => {
    const server = await tokenServer({ omitLifetime: true });
    const { json } = await login(server);
    expect(json).not.toHaveProperty('tokenLifetime');
    expect(json).toHaveProperty('tokenExpiration');
  });

  it('setLifetime applies to the next token issued', async () => {
    const server = await tokenServer();
    server.setLifetime(5);
    const { json } = await login(server);
    expect(json.tokenLifetime).toBe(5);
    clock = START + 5_000;
    expect(server.isValidToken(json.token as string)).toBe(false);
  });
});

describe('demo upstream', () => {
  it('answers 401 invalid_token without a bearer token', async () => {
    const upstream = await upstreamFor(await tokenServer());
    const response = await fetch(`${upstream.url}/vehicles`);
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: 'invalid_token', message: 'missing or expired bearer token' });
    expect(upstream).toMatchObject({ requests: 1, rejected: 1 });
  });

  it('answers 200 with request metadata for a valid token, and 401 once it expires', async () => {
    const server = await tokenServer();
    const upstream = await upstreamFor(server);
    const token = (await login(server)).json.token as string;
    const authorization = `Bearer ${token}`;

    const ok = await fetch(`${upstream.url}/things?a=1&a=2&b=x`, {
      method: 'POST',
      headers: { authorization },
      body: 'discarded',
    });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      ok: true,
      api: 'demo-api',
      method: 'POST',
      path: '/things',
      query: { a: ['1', '2'], b: 'x' },
    });
    expect(body.tokenFingerprint).toMatch(/^[0-9a-f]{8}$/);
    expect(JSON.stringify(body)).not.toContain(token);

    clock = START + 60_000;
    const expired = await fetch(`${upstream.url}/things`, { headers: { authorization } });
    expect(expired.status).toBe(401);
    expect(upstream).toMatchObject({ requests: 2, rejected: 1 });
  });

  it('serves a fake vehicle list on GET /vehicles', async () => {
    const server = await tokenServer();
    const upstream = await upstreamFor(server);
    const token = (await login(server)).json.token as string;
    const response = await fetch(`${upstream.url}/vehicles`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await response.json()) as { data: unknown[]; path: string };
    expect(body.path).toBe('/vehicles');
    expect(body.data.length).toBeGreaterThan(0);
  });
});
