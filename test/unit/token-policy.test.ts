import { mkdtempSync, renameSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { secretFilesOf } from '../../src/config/resolve.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import { UNLOCKED_REFRESH_RISK } from '../../src/tokens/account-state.js';
import type { SendTokenRequest, TokenTrigger } from '../../src/tokens/types.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ScriptedTokenServer } from '../helpers/scripted-token-server.js';
import { quietTokenEvents, SESSION_AUTH, testAccount, testTokenManager } from '../helpers/token-manager-setup.js';
import { SharedStoreHub, SoakTokenServer } from '../soak/world.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

/** One session account on a scripted token server and a fake clock (`passwordFile`: its password is read from there). */
function setup(options: { refresh?: Record<string, unknown>; passwordFile?: string } = {}) {
  const clock = new FakeClock();
  const server = new ScriptedTokenServer(() => clock.now());
  const { password: _inline, ...sessionAuth } = SESSION_AUTH;
  const account = testAccount(
    options.passwordFile === undefined ? SESSION_AUTH : { ...sessionAuth, passwordFile: options.passwordFile },
    { refresh: options.refresh ?? {} },
  );
  const requests: Array<{ kind: string; trigger: TokenTrigger; at: number }> = [];
  const log = captureLogger();
  const manager = testTokenManager({
    clock,
    account,
    store: new MemoryTokenStore(),
    events: quietTokenEvents({
      tokenRequest: (kind, _outcome, trigger) => requests.push({ kind, trigger, at: clock.now() }),
    }),
    logger: log.logger,
    send: (request, sendOptions) => server.send(request, sendOptions),
    secretFiles: secretFilesOf(account.auth),
  });
  const advance = (ms: number) => clock.advance(ms, () => manager.settled());
  /** The upstream answers `status` to a request sent with the current token (T8, P1). */
  const upstreamAnswers = (status: number) => {
    const token = manager.current();
    if (token === undefined) return;
    if (status === 401 || status === 403) manager.replacementFor(token).catch(() => undefined);
    else manager.tokenAccepted(token);
  };
  return { clock, server, manager, requests, log, advance, upstreamAnswers };
}

describe('T6 loop guard', () => {
  it('T6: a token the server says is dead on arrival (tokenLifetime 0) is replaced about minInterval after the first 401', async () => {
    const { clock, server, manager, advance } = setup();
    server.lifetime = 0;
    server.extraFields = { tokenExpiration: Math.floor(clock.now() / 1000) };
    await manager.start();
    await manager.settled();
    const start = clock.now();
    const first = manager.current();
    expect(first).toBeDefined();
    // The upstream answers 401 at once: the guessed 300 s lifetime must not widen the guard to 30 s.
    if (first !== undefined) manager.replacementFor(first).catch(() => undefined);
    await advance(5 * SECOND);
    expect(server.sent.map((request) => request.at - start)).toEqual([0, 5 * SECOND]);
  });

  it('T6: a one-hour token revoked a minute after its refresh is replaced by one token request within minInterval', async () => {
    const { clock, server, manager, advance, upstreamAnswers } = setup();
    server.lifetime = 3600;
    await manager.start();
    await manager.settled();
    await advance(48 * MINUTE);
    expect(server.count()).toBe(2);
    await advance(MINUTE);
    const rejectedAt = clock.now();
    upstreamAnswers(401);
    await advance(5 * SECOND);
    expect(server.count()).toBe(3);
    expect((server.sent[2]?.at ?? 0) - rejectedAt).toBeLessThanOrEqual(5 * SECOND);
  });

  it('T6: scheduled renewals keep 10% of a lifetime the server stated between them, and only of a stated one', async () => {
    const { clock, server, manager, advance } = setup({ refresh: { defaultLifetime: '20s' } });
    server.lifetime = 600;
    await manager.start();
    await manager.settled();
    const start = clock.now();
    // A stated 10-minute lifetime: an admin request 10 s later goes ahead (minInterval only).
    await advance(10 * SECOND);
    server.lifetime = undefined;
    expect(manager.requestRefresh('admin').result).toBe('started');
    await manager.settled();
    // The new token's lifetime is a guess (20 s): the schedule at 0.8 x 20 s is not pushed out to 60 s.
    await advance(20 * SECOND);
    expect(server.sent.map((request) => request.at - start)).toEqual([0, 10 * SECOND, 10 * SECOND + 15_600]);
  });
});

describe('P1 upstream rejections escalate', () => {
  /** Clients call an endpoint answering `status` 20 times a second for `ms`. */
  async function clientsFor(ms: number, status: number, s: ReturnType<typeof setup>) {
    for (let elapsed = 0; elapsed < ms; elapsed += 50) {
      s.upstreamAnswers(status);
      await s.advance(50);
    }
  }

  it('P1: an endpoint answering 403 to everything at 20 requests/s: rejection refreshes back off 5 s, 10 s, 20 s ... capped at 5 min', async () => {
    const s = setup();
    s.server.lifetime = 3600;
    await s.manager.start();
    await s.manager.settled();
    const start = s.clock.now();
    await clientsFor(20 * MINUTE, 403, s);
    const times = s.server.sent.map((request) => (request.at - start) / SECOND);
    expect(times).toEqual([0, 5, 15, 35, 75, 155, 315, 615, 915]);
    expect(s.requests.slice(1).every((request) => request.trigger === 'upstream_rejection')).toBe(true);
  });

  it('P1: the escalation resets once a request with the current token gets an answer outside retryOn', async () => {
    const s = setup();
    s.server.lifetime = 3600;
    await s.manager.start();
    await s.manager.settled();
    await clientsFor(40 * SECOND, 403, s);
    expect(s.server.count()).toBe(4); // 0, 5, 15, 35
    await clientsFor(SECOND, 200, s);
    const rejectedAt = s.clock.now();
    await clientsFor(5 * SECOND, 401, s);
    expect(s.server.count()).toBe(5);
    expect((s.server.sent[4]?.at ?? 0) - rejectedAt).toBeLessThanOrEqual(5 * SECOND);
  });
});

describe('P4 account states', () => {
  it('P4: a valid token whose renewals fail is degraded with the reason; the next token makes it valid again', async () => {
    const s = setup();
    s.server.lifetime = 100;
    await s.manager.start();
    await s.manager.settled();
    expect(s.manager.status()).toMatchObject({ state: 'valid', ready: true, warnings: [] });
    s.server.behaviour = { type: 'status', status: 502 };
    await s.advance(80 * SECOND);
    const status = s.manager.status();
    expect(status.state).toBe('degraded');
    expect(status.ready).toBe(true);
    expect(status.warnings).toEqual([
      expect.stringMatching(/^token renewals failing \(\d+ in a row\): refresh failed/),
    ]);
    s.server.behaviour = { type: 'ok' };
    await s.advance(15 * SECOND);
    expect(s.manager.status()).toMatchObject({ state: 'valid', warnings: [] });
  });

  it('P4: starting before the first token, expired when it ran out with no new one, rejected on refused credentials, stopped', async () => {
    const s = setup();
    s.server.lifetime = 30;
    expect(s.manager.status().state).toBe('starting');
    await s.manager.start();
    await s.manager.settled();
    s.server.behaviour = { type: 'refuse' };
    await s.advance(31 * SECOND);
    expect(s.manager.status()).toMatchObject({ state: 'expired', ready: false, warnings: [] });
    s.server.behaviour = { type: 'status', status: 401, body: '{"success":false,"message":"invalid credentials"}' };
    await s.advance(5 * MINUTE);
    expect(s.manager.status()).toMatchObject({ state: 'rejected', ready: false });
    await s.manager.stop();
    expect(s.manager.status().state).toBe('stopped');
  });
});

describe('P2 credentials that change', () => {
  const RIGHT = 'right-password';

  /** A password file (Kubernetes layout: `password` -> `..data/password`, `..data` -> a timestamped dir). */
  function kubernetesSecret(initial: string) {
    const dir = mkdtempSync(join(tmpdir(), 'bs-p2-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    let version = 0;
    const publish = (password: string) => {
      version += 1;
      const target = join(dir, `..2026_${version}`);
      mkdirSync(target);
      writeFileSync(join(target, 'password'), `${password}\n`);
      symlinkSync(target, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data')); // the atomic swap kubelet does
    };
    publish(initial);
    symlinkSync(join('..data', 'password'), join(dir, 'password'));
    return { path: join(dir, 'password'), publish };
  }

  /** The token server accepts only RIGHT as the password; every login attempt is recorded with its password. */
  function checkingPasswords(s: ReturnType<typeof setup>) {
    const tried: Array<{ password: string; at: number }> = [];
    const send = s.server.send;
    s.server.send = async (request, sendOptions) => {
      const body = JSON.parse(request.body) as { password?: string };
      if (body.password !== undefined) tried.push({ password: body.password, at: s.clock.now() });
      if (body.password !== undefined && body.password !== RIGHT)
        return { status: 401, headers: {}, body: '{"success":false,"message":"invalid credentials"}' };
      return send(request, sendOptions);
    };
    return tried;
  }

  async function rejectedAtStart() {
    const secret = kubernetesSecret('wrong-password');
    const s = setup({ passwordFile: secret.path });
    const tried = checkingPasswords(s);
    await s.manager.start();
    await s.manager.settled();
    expect(s.manager.status().state).toBe('rejected');
    return { ...s, secret, tried };
  }

  it('P2: wrong password at start, the right one written 20 s later and POST refresh: started at once, ready without waiting for the backoff', async () => {
    const s = await rejectedAtStart();
    await s.advance(20 * SECOND);
    s.secret.publish(RIGHT);
    const outcome = await s.manager.adminRefresh();
    expect(outcome.result).toBe('started');
    await s.manager.settled();
    expect(s.manager.status()).toMatchObject({ state: 'valid', ready: true });
    expect(s.tried.map((attempt) => attempt.password)).toEqual(['wrong-password', RIGHT]);
  });

  it('P2: without the POST, a changed password file (Kubernetes symlink swap) is noticed within 5 s and logged in with at once', async () => {
    const s = await rejectedAtStart();
    await s.advance(20 * SECOND);
    s.secret.publish(RIGHT);
    const writtenAt = s.clock.now();
    await s.advance(5 * SECOND);
    await vi.waitFor(() => expect(s.tried).toHaveLength(2));
    await s.manager.settled();
    expect((s.tried[1]?.at ?? 0) - writtenAt).toBeLessThanOrEqual(5 * SECOND);
    expect(s.manager.status()).toMatchObject({ state: 'valid', ready: true });
  });

  it('P2: POST refresh with the same credentials during the backoff is deferred with the reason; the same credentials wait for the backoff', async () => {
    const s = await rejectedAtStart();
    await s.advance(20 * SECOND);
    s.secret.publish('wrong-password'); // rewritten, same content: not a change
    const outcome = await s.manager.adminRefresh();
    expect(outcome).toEqual({
      result: 'deferred',
      at: s.manager.status().nextRequestAt,
      reason: 'the same credentials were rejected',
    });
    await s.advance(30 * SECOND);
    expect(s.tried).toHaveLength(1);
    await s.advance(10 * SECOND); // the 1-minute backoff ends
    expect(s.tried).toHaveLength(2);
  });

  it('P2: a new wrong password is tried at once (held only by minInterval), then not again before the backoff', async () => {
    const s = await rejectedAtStart();
    await s.advance(2 * SECOND);
    s.secret.publish('another-wrong-password');
    await s.advance(3 * SECOND); // the look at 5 s, which is also minInterval after the first login
    await vi.waitFor(() => expect(s.tried).toHaveLength(2));
    await s.manager.settled();
    expect(s.tried[1]).toEqual({ password: 'another-wrong-password', at: s.tried[0]!.at + 5 * SECOND });
    await s.advance(50 * SECOND);
    expect(s.tried).toHaveLength(2);
    expect(s.manager.status().state).toBe('rejected');
  });
});

describe('P3 shared refresh chains without the lock', () => {
  /** Replicas of one account on a shared store (the soak's world), with the unlocked refreshes they count. */
  function sharedReplicas(auth: Record<string, unknown>, send: (clock: FakeClock) => SendTokenRequest) {
    const clock = new FakeClock();
    const hub = new SharedStoreHub(() => clock.now());
    const account = testAccount(auth, { refresh: { timeout: '10s' } });
    const unlocked: number[] = [];
    const sender = send(clock);
    const managers = [0, 1].map((index) =>
      testTokenManager({
        clock,
        account,
        store: hub.view(index),
        events: quietTokenEvents({ unlockedRefresh: () => unlocked.push(clock.now()) }),
        send: sender,
        random: () => 0.3 + index * 0.4,
      }),
    );
    const settle = () => Promise.all(managers.map((manager) => manager.settled())).then(() => undefined);
    const start = async () => {
      for (const manager of managers) await manager.start();
      await clock.advance(0, settle);
    };
    return { clock, hub, managers, unlocked, start, advance: (ms: number) => clock.advance(ms, settle) };
  }

  it('P3: two replicas on a shared store, the store killed mid-run: each logs in rather than spend the shared refresh token; none is sent twice', async () => {
    let server: SoakTokenServer | undefined;
    const world = sharedReplicas(
      { flow: 'session', loginUrl: 'http://t/login', refreshUrl: 'http://t/refresh', username: 'u', password: 'p' },
      (clock) => {
        server = new SoakTokenServer(() => clock.now(), 600);
        return (request) => server!.send(request);
      },
    );
    await world.start();
    await world.advance(30 * MINUTE);
    world.hub.down = true;
    await world.advance(90 * MINUTE);
    world.hub.down = false;
    await world.advance(60 * MINUTE);
    expect(server?.reusedRefreshTokens).toEqual([]);
    expect(world.unlocked).toEqual([]);
    expect(world.managers.every((manager) => manager.current() !== undefined)).toBe(true);
  });

  it('P3: an account with only a refresh token keeps its valid token while the store is down, warns in /readyz, and refreshes without the lock only in the last 2 x refresh.timeout (counted)', async () => {
    const live = new Set(['r0']);
    const world = sharedReplicas(
      { flow: 'oauth2', tokenUrl: 'http://t/token', grant: 'refresh_token', clientId: 'c', refreshToken: 'r0' },
      () => async (request) => {
        const sent = new URLSearchParams(request.body).get('refresh_token') ?? '';
        if (!live.delete(sent)) return { status: 400, headers: {}, body: '{"error":"invalid_grant"}' };
        const next = `r-${live.size}-${Math.random()}`;
        live.add(next);
        const body = { access_token: `a-${next}`, token_type: 'Bearer', expires_in: 600, refresh_token: next };
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
      },
    );
    await world.start();
    const expiresAt = world.managers[0]?.status().expiresAt ?? 0;
    await world.advance(MINUTE);
    world.hub.down = true;
    await world.advance(7 * MINUTE); // past the scheduled renewal (0.8 x 600 s): the lock cannot be taken
    const status = world.managers[0]!.status();
    expect(status).toMatchObject({ state: 'degraded', ready: true });
    expect(status.warnings).toContain(UNLOCKED_REFRESH_RISK);
    expect(world.unlocked).toEqual([]);
    await world.advance(3 * MINUTE);
    expect(world.unlocked.length).toBeGreaterThan(0);
    expect(Math.min(...world.unlocked)).toBeGreaterThanOrEqual(expiresAt - 20 * SECOND);
    expect(world.managers.some((manager) => manager.current() !== undefined)).toBe(true);
  });
});
