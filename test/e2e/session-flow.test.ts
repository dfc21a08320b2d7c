import { describe, expect, it, vi } from 'vitest';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import { issuedSecrets, metricSum, useHarness } from '../helpers/harness.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;

const harness = useHarness();

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

describe('T1 expiry on the local clock', () => {
  it.each([
    ['+2 h', 2 * HOUR],
    ['-2 h', -2 * HOUR],
  ])(
    'T1/T3: server clock skewed %s with 8 s tokens: an hour of requests all answered 200, one login, no refresh token reused',
    async (_label, skew) => {
      const session = await harness.session({ server: { lifetimeSeconds: 8, clockSkewMs: skew } });
      const { sidecar, tokenServer, advance } = session;
      const statuses = new Map<number, number>();
      for (let elapsed = 0; elapsed < HOUR; elapsed += 2 * SECOND) {
        const { status } = await get(`${sidecar.dataUrl()}/vehicles`);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        await advance(2 * SECOND);
      }
      expect(Object.fromEntries(statuses)).toEqual({ 200: 1800 });
      expect(tokenServer.stats.logins).toBe(1);
      expect(tokenServer.stats.refreshTokenReuse).toBe(0);
      expect(tokenServer.stats.rejectedRefreshes).toBe(0);
      // One refresh every 0.8 x 8 s (less jitter): about 580 in the hour, never a burst.
      expect(tokenServer.stats.refreshes).toBeGreaterThan(550);
      expect(tokenServer.stats.refreshes).toBeLessThan(600);

      const metrics = await (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
      expect(metricSum(metrics, METRIC_NAMES.tokenRequests)).toBe(tokenServer.stats.requests);
      expect(metricSum(metrics, METRIC_NAMES.clockSkew)).toBeCloseTo(skew / 1000, -1);
      expect(metricSum(metrics, METRIC_NAMES.lifetimeAnomalies)).toBe(0);
    },
  );
});

describe('T2 renewal schedule and single flight', () => {
  it('T2: 500 concurrent requests at cold start cause exactly one token request', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const session = await harness.session({
      wrapSend: (send) => async (request, options) => {
        await gate;
        return send(request, options);
      },
    });
    const { sidecar, tokenServer } = session;
    const requests = Array.from({ length: 500 }, () => get(`${sidecar.dataUrl()}/vehicles`));
    // Let all 500 arrive and queue behind the one login before it is answered.
    await vi.waitFor(() => expect(sidecar.manager('fleet')?.status().waiting).toBe(500), { timeout: 20_000 });
    release();
    const answers = await Promise.all(requests);
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    expect(tokenServer.stats.requests).toBe(1);
    expect(session.upstream.requests).toBe(500);
  });
});

describe('T7 cold start', () => {
  it('T7: requests that arrive before the first token wait up to waitForToken, then get 503 token_unavailable with Retry-After', async () => {
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    const session = await harness.session({
      account: { refresh: { waitForToken: '2s' } },
      // A token server that does not answer until the test is over.
      wrapSend: (send) => async (request, options) => {
        await stalled;
        return send(request, options);
      },
    });
    const { sidecar, clock, upstream } = session;
    const pending = fetch(`${sidecar.dataUrl()}/vehicles`);
    await vi.waitFor(() => expect(sidecar.manager('fleet')?.status().waiting).toBe(1));
    await clock.advance(1999);
    expect(sidecar.manager('fleet')?.status().waiting).toBe(1);
    await clock.advance(1);
    const response = await pending;
    expect(response.status).toBe(503);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await response.json()).toMatchObject({ error: 'token_unavailable', account: 'fleet' });
    expect(upstream.requests).toBe(0);
    release();
  });

  it('T7: when the next token attempt is later than waitForToken, requests get 503 at once, with Retry-After for that attempt', async () => {
    const session = await harness.session({
      account: { refresh: { waitForToken: '2s', minInterval: '5s' } },
      wrapSend: () => async () => {
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      },
    });
    const { sidecar, upstream } = session;
    await sidecar.settled();
    const response = await fetch(`${sidecar.dataUrl()}/vehicles`);
    expect(response.status).toBe(503);
    expect(Number(response.headers.get('retry-after'))).toBe(5);
    expect(upstream.requests).toBe(0);
    const ready = await fetch(`${sidecar.adminUrl()}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/no token yet; last error: login failed/);
  });
});

describe('T6 loop guard', () => {
  it.each([
    ['0', { lifetimeField: 0 }],
    ['-5', { lifetimeField: -5 }],
    ['"abc"', { lifetimeField: 'abc' }],
    ['missing', { omitLifetime: true }],
    ['1 s (shorter than minInterval)', { lifetimeSeconds: 1 }],
  ])(
    'T6/§8: a token lifetime of %s never brings two token requests closer than the guard',
    async (_label, serverOptions) => {
      const session = await harness.session({
        server: { lifetimeSeconds: 8, ...serverOptions },
        account: { refresh: { minInterval: '5s' } },
      });
      const { advance, tokenServer, sidecar, sentAt: times } = session;
      for (let elapsed = 0; elapsed < 10 * 60 * SECOND; elapsed += 500) await advance(500);
      const gaps = times.slice(1).map((time, index) => time - (times[index] ?? 0));
      expect(gaps.length).toBeGreaterThan(10);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(5 * SECOND);
      const metrics = await (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
      expect(metricSum(metrics, METRIC_NAMES.lifetimeAnomalies)).toBeGreaterThan(0);
      expect(metricSum(metrics, METRIC_NAMES.tokenRequests)).toBe(tokenServer.stats.requests);
    },
  );
});

describe('F6 no secret in any output', () => {
  it('F6: no password, token or refresh token appears in logs, metrics, /status or error bodies', async () => {
    const session = await harness.session({ server: { lifetimeSeconds: 8 } });
    const { sidecar, advance, password, log, responses } = session;
    for (let i = 0; i < 10; i++) {
      await get(`${sidecar.dataUrl()}/vehicles`);
      await advance(4 * SECOND);
    }
    const errorBodies = [
      (await get(`${sidecar.dataUrl()}/a/%2e%2e/b`)).body,
      await fetch(`${sidecar.dataUrl()}/x`, { headers: { 'x-sidecar-account': 'nobody' } }).then((r) => r.text()),
    ];
    const seen = [
      log.text(),
      await (await fetch(`${sidecar.adminUrl()}/metrics`)).text(),
      await (await fetch(`${sidecar.adminUrl()}/status`)).text(),
      await (await fetch(`${sidecar.adminUrl()}/status`, { headers: { accept: 'text/html' } })).text(),
      await (await fetch(`${sidecar.adminUrl()}/readyz`)).text(),
      ...errorBodies,
    ].join('\n');
    const secrets = [password, ...issuedSecrets(responses)];
    expect(secrets.length).toBeGreaterThan(10);
    for (const secret of secrets) expect(seen).not.toContain(secret);
    // The fingerprint is what /status shows instead.
    const status = (await (await fetch(`${sidecar.adminUrl()}/status`)).json()) as {
      accounts: { fleet: { fingerprint: string } };
    };
    expect(status.accounts.fleet.fingerprint).toMatch(/^[0-9a-f]{8}$/);
  });
});

describe('§6 admin endpoints', () => {
  it('§6: POST /accounts/NAME/refresh asks for a token now, and is loop-guarded like any trigger', async () => {
    const session = await harness.session({ server: { lifetimeSeconds: 3600 } });
    const { sidecar, tokenServer, advance } = session;
    await advance(6 * 60 * SECOND);
    const first = await fetch(`${sidecar.adminUrl()}/accounts/fleet/refresh`, { method: 'POST' });
    expect(await first.json()).toMatchObject({ account: 'fleet', result: 'started' });
    await sidecar.settled();
    const burst = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${sidecar.adminUrl()}/accounts/fleet/refresh`, { method: 'POST' }).then((r) => r.json()),
      ),
    );
    expect(burst.every((answer) => (answer as { result: string }).result === 'deferred')).toBe(true);
    expect(tokenServer.stats.refreshes).toBe(1);
    const unknown = await fetch(`${sidecar.adminUrl()}/accounts/nobody/refresh`, { method: 'POST' });
    expect(unknown.status).toBe(404);
    const metrics = await (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
    expect(metricSum(metrics, METRIC_NAMES.tokenRequests, 'trigger="admin"')).toBe(1);
    expect(metricSum(metrics, METRIC_NAMES.tokenRequestsSuppressed, 'reason="min_interval"')).toBe(20);
  });
});
