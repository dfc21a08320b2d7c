import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { RefreshPolicy } from '../../src/config/resolve.js';
import { createFlow } from '../../src/flows/index.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { SaveResult, TokenState } from '../../src/stores/types.js';
import { TokenManager } from '../../src/tokens/token-manager.js';
import { TokenUnavailableError, type TokenEvents, type TokenTrigger } from '../../src/tokens/types.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ScriptedTokenServer } from '../helpers/scripted-token-server.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;

interface Recorded {
  requests: Array<{ kind: string; outcome: string; trigger: TokenTrigger }>;
  suppressed: string[];
  anomalies: string[];
}

function setup(
  options: { refresh?: Record<string, unknown>; auth?: Record<string, unknown>; store?: MemoryTokenStore } = {},
) {
  const clock = new FakeClock();
  const server = new ScriptedTokenServer(() => clock.now());
  const auth = options.auth ?? {
    flow: 'session',
    loginUrl: 'http://token.test/auth/login',
    refreshUrl: 'http://token.test/auth/refresh',
    username: 'u',
    password: 'p',
  };
  const config = parseConfig(
    { accounts: { acct: { upstream: 'http://api.test', auth, refresh: options.refresh ?? {} } } },
    { env: {} },
  );
  const account = config.accounts[0];
  if (account === undefined) throw new Error('no account');
  const recorded: Recorded = { requests: [], suppressed: [], anomalies: [] };
  const events: TokenEvents = {
    tokenRequest: (kind, outcome, trigger) => recorded.requests.push({ kind, outcome, trigger }),
    suppressed: (reason) => recorded.suppressed.push(reason),
    lifetimeAnomaly: (reason) => recorded.anomalies.push(reason),
    clockSkew: () => undefined,
    storeError: () => undefined,
  };
  const log = captureLogger();
  const store = options.store ?? new MemoryTokenStore();
  const manager = new TokenManager({
    account: 'acct',
    flow: createFlow(account.auth),
    policy: account.refresh,
    store,
    clock,
    events,
    logger: log.logger,
    send: server.send,
    random: () => 0.5,
  });
  const advance = (ms: number) => clock.advance(ms, () => manager.settled());
  return { clock, server, manager, recorded, log, store, policy: account.refresh as RefreshPolicy, advance };
}

/** Gaps between consecutive token requests, in ms. */
function gaps(times: number[]): number[] {
  return times.slice(1).map((time, index) => time - (times[index] ?? 0));
}

describe('§8 edge-case decisions', () => {
  it('§8: the first login happens at startup, not on the first request', async () => {
    const { manager, server, recorded } = setup();
    await manager.start();
    await manager.settled();
    expect(server.count('login')).toBe(1);
    expect(recorded.requests).toEqual([{ kind: 'login', outcome: 'success', trigger: 'startup' }]);
    expect(manager.status().ready).toBe(true);
  });
});

describe('T2 renewal schedule and single flight', () => {
  it('T2: a valid token is served synchronously, with no token request', async () => {
    const { manager, server } = setup();
    await manager.start();
    await manager.settled();
    const before = server.count();
    const token = manager.current();
    expect(token).toBeDefined();
    expect(token).not.toBeInstanceOf(Promise);
    for (let i = 0; i < 1000; i++) manager.current();
    expect(server.count()).toBe(before);
  });

  it('T2: the next token request is scheduled at `at` x lifetime, minus a few percent of jitter', async () => {
    const { manager, server, clock, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    const obtainedAt = clock.now();
    const next = manager.status().nextRequestAt ?? 0;
    expect(next - obtainedAt).toBeGreaterThanOrEqual(0.8 * 0.95 * 100 * SECOND);
    expect(next - obtainedAt).toBeLessThanOrEqual(0.8 * 100 * SECOND);
    await advance(next - obtainedAt - 1);
    expect(server.count()).toBe(1);
    await advance(1);
    expect(server.count('refresh')).toBe(1);
    expect(manager.status().counts.refresh.success).toBe(1);
  });

  it('T2: every request that needs the token while one is being fetched shares that one request', async () => {
    const { manager, server } = setup();
    const startup = manager.start();
    const waiting = Array.from({ length: 500 }, () => manager.waitForToken());
    await startup;
    const tokens = await Promise.all(waiting);
    expect(server.count()).toBe(1);
    expect(new Set(tokens.map((token) => token.fingerprint)).size).toBe(1);
  });
});

describe('T3 rotating refresh tokens', () => {
  it('T3: a used refresh token is never sent again, and each refresh uses the newest one', async () => {
    const { manager, server, advance } = setup({ refresh: { minInterval: '1s' } });
    server.lifetime = 10;
    await manager.start();
    await advance(60 * MINUTE);
    const refreshes = server.sent.filter((request) => request.kind === 'refresh');
    expect(refreshes.length).toBeGreaterThan(400);
    expect(server.reuse).toBe(0);
    expect(new Set(refreshes.map((request) => request.refreshToken)).size).toBe(refreshes.length);
    expect(server.count('login')).toBe(1);
  });

  it('T3: the new refresh token is in the store before the new access token is used', async () => {
    const observed: Array<{ savedRefresh: string | undefined; generationInUse: number | undefined }> = [];
    const holder: { manager?: TokenManager } = {};
    class WatchingStore extends MemoryTokenStore {
      override async save(
        account: string,
        state: TokenState,
        expected?: number | null,
        lastKnown?: number,
      ): Promise<SaveResult> {
        observed.push({
          savedRefresh: state.refreshToken?.fingerprint(),
          generationInUse: holder.manager?.current()?.generation,
        });
        return super.save(account, state, expected, lastKnown);
      }
    }
    const ctx = setup({ store: new WatchingStore() });
    holder.manager = ctx.manager;
    ctx.server.lifetime = 10;
    await ctx.manager.start();
    await ctx.advance(9 * SECOND);
    expect(observed).toHaveLength(2);
    // At the moment of the second save, the first token (generation 1) is still the one in use.
    expect(observed[1]?.generationInUse).toBe(1);
    expect(ctx.manager.current()?.generation).toBe(2);
    const stored = await ctx.store.load('acct');
    expect(stored?.state.refreshToken?.fingerprint()).toBe(observed[1]?.savedRefresh);
  });

  it('T3: a session refresh answered without a new refresh token has spent the old one: the next renewal is a login', async () => {
    const { manager, server, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    server.omitRefreshTokenNext();
    await advance(80 * SECOND);
    await advance(80 * SECOND);
    expect(server.sent.map((request) => request.kind)).toEqual(['login', 'refresh', 'login']);
    expect(server.reuse).toBe(0);
  });
});

describe('§3 configuration', () => {
  it('§3: a session account without refreshUrl renews by logging in again', async () => {
    const { manager, server, advance } = setup({
      auth: { flow: 'session', loginUrl: 'http://token.test/auth/login', username: 'u', password: 'p' },
    });
    server.lifetime = 60;
    await manager.start();
    await advance(5 * MINUTE);
    expect(server.count('refresh')).toBe(0);
    expect(server.count('login')).toBeGreaterThan(5);
  });
});

describe('T4 a rejected refresh falls back to a login', () => {
  it('T4: a rejected refresh falls back to a full login (after the guard)', async () => {
    const { manager, server, recorded, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    // The server forgets the chain (e.g. it was revoked): the next refresh is rejected.
    server.rejectNext('refresh token expired');
    await advance(80 * SECOND);
    await advance(10 * SECOND);
    expect(recorded.requests.map((r) => `${r.kind}:${r.outcome}:${r.trigger}`)).toEqual([
      'login:success:startup',
      'refresh:rejected:schedule',
      'login:success:retry',
    ]);
    const times = server.sent.map((request) => request.at);
    // The retry is not a scheduled renewal: minInterval holds it, not 10% of the lifetime (T6).
    expect(gaps(times).every((gap) => gap >= 5 * SECOND)).toBe(true);
    expect(manager.status().ready).toBe(true);
  });

  it('T4: without credentials (grant refresh_token) a rejected refresh turns the account unready and says why', async () => {
    const configured = `r0-${Math.random().toString(36).slice(2)}`;
    const { manager, server, recorded, log, advance } = setup({
      auth: {
        flow: 'oauth2',
        tokenUrl: 'http://token.test/token',
        grant: 'refresh_token',
        clientId: 'c',
        refreshToken: configured,
      },
    });
    server.behaviour = {
      type: 'status',
      status: 400,
      body: '{"error":"invalid_grant","error_description":"refresh token revoked"}',
    };
    await manager.start();
    await manager.settled();
    expect(recorded.requests).toEqual([{ kind: 'refresh', outcome: 'rejected', trigger: 'startup' }]);
    const status = manager.status();
    expect(status.ready).toBe(false);
    expect(status.reason).toMatch(/refresh token rejected and no credentials to log in with: invalid_grant/);
    // T3: the rejected configured token is not sent again, however long we wait.
    await advance(30 * MINUTE);
    expect(server.sent).toHaveLength(1);
    expect(server.sent[0]?.refreshToken).toBe(configured);
    expect(manager.status().reason).toMatch(/already used/);
    expect(log.text()).not.toContain(configured);
  });
});

describe('T5 transient failures back off', () => {
  it('T5: token endpoint failures back off exponentially from 1s, while the valid token keeps being served', async () => {
    const { manager, server, advance } = setup({ refresh: { minInterval: '1s' } });
    server.lifetime = 10;
    await manager.start();
    await manager.settled();
    server.behaviour = { type: 'status', status: 503 };
    await advance(8 * SECOND);
    expect(server.sent.at(-1)?.kind).toBe('refresh');
    // The first refresh failed, the token it would have replaced is still served.
    expect(manager.current()).toBeDefined();
    await advance(10 * MINUTE);
    const failures = server.sent.slice(1);
    expect(failures.length).toBeGreaterThan(5);
    expect(failures.length).toBeLessThanOrEqual(20);
    const waits = gaps(failures.map((request) => request.at));
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(SECOND);
    expect(Math.max(...waits)).toBeLessThanOrEqual(5 * MINUTE);
    // Exponential: later waits are longer than the first ones.
    expect(waits.at(-1) ?? 0).toBeGreaterThan((waits[0] ?? 0) * 8);
    expect(manager.status().counts.refresh.error + manager.status().counts.login.error).toBe(failures.length);
    server.behaviour = { type: 'ok' };
    await advance(5 * MINUTE);
    expect(manager.current()).toBeDefined();
    expect(manager.status().consecutiveFailures).toBe(0);
    expect(server.reuse).toBe(0);
  });

  it('T5: a refresh that reached the server but got no clear answer is retried once with the same token, then a login follows', async () => {
    const { manager, server, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    server.behaviour = { type: 'status', status: 502 };
    await advance(80 * SECOND);
    // The retry waits for minInterval (T6: 10% of the lifetime spaces scheduled renewals only).
    await advance(5 * SECOND);
    expect(server.sent.map((request) => request.kind)).toEqual(['login', 'refresh', 'refresh']);
    server.behaviour = { type: 'ok' };
    await advance(60 * SECOND);
    const [, first, second, third] = server.sent;
    expect(first?.refreshToken).toBe(second?.refreshToken);
    expect(third?.kind).toBe('login');
    expect(manager.current()).toBeDefined();
  });

  it('T5: a refused connection never reached the server, so the same refresh token is kept for the next try', async () => {
    const { manager, server, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    server.behaviour = { type: 'refuse' };
    await advance(100 * SECOND);
    server.behaviour = { type: 'ok' };
    await advance(60 * SECOND);
    const refreshes = server.sent.filter((request) => request.kind === 'refresh');
    expect(server.count('login')).toBe(1);
    expect(refreshes.length).toBeGreaterThan(2);
    expect(new Set(refreshes.slice(0, -1).map((request) => request.refreshToken)).size).toBe(1);
    expect(server.reuse).toBe(0);
  });

  it('T5: a rejected login backs off from one minute, turns the account unready and logs it once', async () => {
    const { manager, server, advance, log } = setup();
    server.behaviour = { type: 'reject-login' };
    await manager.start();
    await manager.settled();
    await advance(30 * MINUTE);
    const times = server.sent.map((request) => request.at);
    expect(Math.min(...gaps(times))).toBeGreaterThanOrEqual(MINUTE);
    expect(times.length).toBeLessThanOrEqual(31);
    const status = manager.status();
    expect(status.ready).toBe(false);
    expect(status.reason).toMatch(/login rejected/);
    expect(log.lines().filter((line) => String(line.msg).startsWith('account unready: login rejected'))).toHaveLength(
      1,
    );
    server.behaviour = { type: 'ok' };
    await advance(6 * MINUTE);
    expect(manager.status().ready).toBe(true);
  });

  it('T5/T6: an admin trigger does not cut a pending backoff short (a rejected login is not hammered)', async () => {
    const { manager, server, advance, recorded } = setup();
    server.behaviour = { type: 'reject-login' };
    await manager.start();
    await manager.settled();
    // The first retry of a rejected login is a minute away; admin asks every 6 s inside that minute.
    for (let i = 0; i < 9; i++) {
      await advance(6 * SECOND);
      expect(manager.requestRefresh('admin').result).toBe('deferred');
    }
    expect(server.count()).toBe(1);
    expect(recorded.suppressed.filter((reason) => reason === 'backoff')).toHaveLength(9);
  });

  it('T5: a refresh that failed TLS verification never reached the server: the same refresh token is kept', async () => {
    const { manager, server, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    server.failNext(3, 'tls');
    await advance(3 * MINUTE);
    expect(server.count('login')).toBe(1);
    const refreshes = server.sent.filter((request) => request.kind === 'refresh');
    expect(refreshes.length).toBeGreaterThan(3);
    expect(new Set(refreshes.slice(0, 4).map((request) => request.refreshToken)).size).toBe(1);
    expect(server.reuse).toBe(0);
    expect(manager.current()).toBeDefined();
  });
});

describe('T6 loop guard', () => {
  it.each([
    ['0', 0],
    ['-5', -5],
    ['"abc"', 'abc'],
    ['missing', undefined],
    ['10ms', 0.01],
  ])('T6: a token lifetime of %s never makes two token requests closer than the guard', async (_label, lifetime) => {
    const { manager, server, advance, recorded } = setup({ refresh: { defaultLifetime: '1s' } });
    server.lifetime = lifetime;
    await manager.start();
    await advance(10 * MINUTE);
    const times = server.sent.map((request) => request.at);
    expect(times.length).toBeGreaterThan(1);
    expect(Math.min(...gaps(times))).toBeGreaterThanOrEqual(5 * SECOND);
    expect(times.length).toBeLessThanOrEqual(10 * 12 + 1);
    expect(recorded.anomalies.length).toBeGreaterThan(0);
  });

  it('T6: admin and upstream-rejection triggers in a burst cause one token request, the rest are suppressed', async () => {
    const { manager, server, recorded, advance } = setup();
    server.lifetime = 3600;
    await manager.start();
    await manager.settled();
    for (let i = 0; i < 100; i++) {
      manager.requestRefresh('admin');
      manager.requestRefresh('upstream_rejection');
    }
    await advance(0);
    expect(server.count()).toBe(1);
    expect(recorded.suppressed.length).toBe(200);
    // On-demand triggers are held by minInterval only (5 s), whatever the lifetime: the deferred request comes then, once.
    await advance(5 * SECOND - 1);
    expect(server.count()).toBe(1);
    await advance(1);
    expect(server.count()).toBe(2);
    await advance(6 * MINUTE);
    expect(server.count()).toBe(2);
    expect(recorded.requests[1]?.trigger).toMatch(/admin|upstream_rejection/);
  });

  it('T6: a lifetime anomaly is logged once per reason, and counted every time', async () => {
    const { manager, server, advance, recorded, log } = setup({
      refresh: { minInterval: '1s', defaultLifetime: '2s' },
    });
    server.lifetime = 'abc';
    await manager.start();
    await advance(MINUTE);
    expect(recorded.anomalies.filter((reason) => reason === 'invalid').length).toBeGreaterThan(5);
    expect(log.lines().filter((line) => line.anomaly === 'invalid')).toHaveLength(1);
  });
});

describe('T8 upstream rejection and replay', () => {
  it('T8: a rejection of an older token generation asks for no refresh and is answered with the newer token', async () => {
    const { manager, server, advance } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    const old = manager.current();
    await advance(80 * SECOND);
    expect(manager.current()?.generation).toBe(2);
    const before = server.count();
    if (old === undefined) throw new Error('no first token');
    const replacement = await manager.replacementFor(old);
    expect(replacement.generation).toBe(2);
    expect(server.count()).toBe(before);
  });

  it('T8: many rejections of one generation ask for one refresh; waiters all get the same new token', async () => {
    const { manager, server, advance, recorded } = setup();
    server.lifetime = 100;
    await manager.start();
    await manager.settled();
    await advance(10 * SECOND); // past the guard (max(5 s, 10% of 100 s))
    const token = manager.current();
    if (token === undefined) throw new Error('no token');
    const replacements = await Promise.all(Array.from({ length: 50 }, () => manager.replacementFor(token)));
    expect(new Set(replacements.map((fresh) => fresh.generation))).toEqual(new Set([2]));
    expect(recorded.requests.filter((r) => r.trigger === 'upstream_rejection')).toHaveLength(1);
    expect(recorded.suppressed).toHaveLength(0);
  });
});

describe('T7 cold start', () => {
  it('T7: requests before the first token wait up to waitForToken, then get token_unavailable with a retry time', async () => {
    const { manager, server, clock } = setup({ refresh: { waitForToken: '2s' } });
    const release = server.holdNext();
    void manager.start();
    const waiting = manager.waitForToken();
    const outcome = waiting.then(
      () => 'token',
      (error: unknown) => error,
    );
    await clock.advance(2 * SECOND);
    const error = await outcome;
    expect(error).toBeInstanceOf(TokenUnavailableError);
    expect((error as TokenUnavailableError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    release();
    await manager.settled();
    expect(manager.current()).toBeDefined();
  });

  it('T7: an expired token is never handed out', async () => {
    const { manager, server, advance, clock } = setup({ refresh: { waitForToken: '1s' } });
    server.lifetime = 60;
    await manager.start();
    await manager.settled();
    server.behaviour = { type: 'refuse' };
    await advance(61 * SECOND);
    expect(manager.current()).toBeUndefined();
    expect(manager.status().state).toBe('expired');
    const result = manager.waitForToken().catch((error: unknown) => error);
    await clock.advance(2 * SECOND);
    expect(await result).toBeInstanceOf(TokenUnavailableError);
  });
});

describe('T9 persistence', () => {
  it('T9 (memory reference): a stored valid token is used with no login, on its old schedule', async () => {
    const store = new MemoryTokenStore();
    const first = setup({ store });
    first.server.lifetime = 100;
    await first.manager.start();
    await first.manager.settled();
    await first.manager.stop();
    const second = setup({ store });
    await second.manager.start();
    await second.manager.settled();
    expect(second.server.count()).toBe(0);
    expect(second.manager.current()?.fingerprint).toBe(first.manager.status().fingerprint);
  });
});
