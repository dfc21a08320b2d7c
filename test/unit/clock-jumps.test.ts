import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import { Secret } from '../../src/util/secret.js';
import type { TokenManager } from '../../src/tokens/token-manager.js';
import type { TokenTrigger } from '../../src/tokens/types.js';
import { JUMP_POLL_MS, systemClock } from '../../src/util/clock.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ScriptedTokenServer } from '../helpers/scripted-token-server.js';
import { quietTokenEvents, testTokenManager } from '../helpers/token-manager-setup.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
/** The tokens: 600 s. */
const LIFETIME = 600 * SECOND;
/** With random() = 0.5 the renewal comes at 0.8 x (1 - 0.025) of the lifetime. */
const RENEWAL_AFTER = 0.8 * 0.975 * LIFETIME;

function setup(options: { store?: MemoryTokenStore } = {}) {
  const clock = new FakeClock();
  const server = new ScriptedTokenServer(() => clock.now());
  server.lifetime = LIFETIME / SECOND;
  const triggers: TokenTrigger[] = [];
  const manager = testTokenManager({
    clock,
    store: options.store ?? new MemoryTokenStore(),
    events: quietTokenEvents({ tokenRequest: (_kind, _outcome, trigger) => triggers.push(trigger) }),
    logger: captureLogger().logger,
    send: (request, sendOptions) => server.send(request, sendOptions),
  });
  const advance = (ms: number) => clock.advance(ms, () => manager.settled());
  return { clock, server, manager, triggers, advance };
}

async function started(options: { store?: MemoryTokenStore } = {}) {
  const context = setup(options);
  await context.manager.start();
  await context.manager.settled();
  return context;
}

/** Settles what is under way without moving either clock. */
async function settle(manager: TokenManager): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  await manager.settled();
  await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('R8 time: a suspend (wall clock +2 h, monotonic clock still)', () => {
  it('R8: the first request after waking starts the overdue renewal at once and gets the new token, not a 503', async () => {
    const { clock, server, manager, triggers, advance } = await started();
    // A token request 10 s before the suspend: the loop guard (60 s here) must not hold the renewal either.
    await advance(10 * SECOND);
    clock.suspend(2 * HOUR);

    const outcome: { generation?: number; error?: unknown } = {};
    const waiting = manager.waitForToken().then(
      (token) => (outcome.generation = token.generation),
      (error: unknown) => (outcome.error = error),
    );
    await settle(manager);
    // Neither clock moved since waking: the token came from the request's own look.
    expect(outcome).toEqual({ generation: 2 });
    await waiting;
    expect(server.count()).toBe(2);
    expect(triggers).toEqual(['startup', 'schedule']);
    expect(manager.current()?.generation).toBe(2);
  });

  it('R8: with no traffic, the renewal the suspend made overdue runs within a second of waking', async () => {
    const { clock, server, manager, advance } = await started();
    await advance(100 * SECOND);
    clock.suspend(2 * HOUR);
    expect(server.count()).toBe(1);
    await advance(JUMP_POLL_MS);
    expect(server.count()).toBe(2);
    expect(manager.status().ready).toBe(true);
  });

  it('R8: /status after waking starts the overdue renewal and shows the next one in the future, never in the past', async () => {
    const { clock, server, manager, advance } = await started();
    await advance(100 * SECOND);
    clock.suspend(2 * HOUR);
    const right = manager.status();
    expect(right.state).toBe('refreshing');
    await settle(manager);
    expect(server.count()).toBe(2);
    const after = manager.status();
    expect(after.state).toBe('valid');
    expect(after.nextRequestAt).toBe(clock.now() + RENEWAL_AFTER);
    expect(after.expiresAt).toBe(clock.now() + LIFETIME);
  });
});

describe('R8 time: the wall clock set back', () => {
  it("R8: a wall clock set back 1 h does not extend the token's life", async () => {
    const { clock, server, manager, advance } = await started();
    clock.stepWall(-HOUR);
    // The renewals fail, so the first token has to run out.
    server.behaviour = { type: 'refuse' };
    await advance(LIFETIME - 1);
    expect(manager.current()?.generation).toBe(1);
    expect(manager.status().expiresAt).toBe(clock.now() + 1);
    await advance(1);
    expect(manager.current()).toBeUndefined();
    expect(manager.status().state).toBe('expired');
  });

  it('R8: a wall clock set back 1 h leaves the renewal on its monotonic schedule', async () => {
    const { clock, server, manager, advance } = await started();
    await advance(100 * SECOND);
    clock.stepWall(-HOUR);
    await advance(JUMP_POLL_MS);
    expect(manager.status().nextRequestAt).toBe(clock.now() + RENEWAL_AFTER - 100 * SECOND - JUMP_POLL_MS);
    await advance(RENEWAL_AFTER - 100 * SECOND - JUMP_POLL_MS - 1);
    expect(server.count()).toBe(1);
    await advance(1);
    expect(server.count()).toBe(2);
  });

  it('R8: a token taken from the store ages on both clocks from when it was taken', async () => {
    const store = new MemoryTokenStore();
    const clock = new FakeClock();
    const obtainedAt = clock.now() - 100 * SECOND;
    await store.save(
      'acct',
      {
        accessToken: new Secret('stored-token'),
        obtainedAt,
        expiresAt: obtainedAt + LIFETIME,
        lifetimeMs: LIFETIME,
        refreshToken: undefined,
      },
      null,
    );
    const { server, manager, clock: managerClock, advance } = await started({ store });
    expect(server.count()).toBe(0);
    managerClock.stepWall(-HOUR);
    server.behaviour = { type: 'refuse' };
    await advance(LIFETIME - 100 * SECOND - 1);
    expect(manager.current()?.generation).toBe(1);
    await advance(1);
    expect(manager.current()).toBeUndefined();
  });
});

describe('R8 time: a small forward step (NTP)', () => {
  it('R8: a forward step of 5 s causes no extra token request; the renewal comes 5 s sooner, once', async () => {
    const { clock, server, manager, advance } = await started();
    await advance(100 * SECOND);
    clock.stepWall(5 * SECOND);
    await advance(JUMP_POLL_MS);
    expect(server.count()).toBe(1);
    // The token is 5 s older than the monotonic clock says: its renewal is 5 s nearer.
    expect(manager.status().nextRequestAt).toBe(clock.now() + RENEWAL_AFTER - 105 * SECOND - JUMP_POLL_MS);
    await advance(RENEWAL_AFTER - 105 * SECOND - JUMP_POLL_MS - 1);
    expect(server.count()).toBe(1);
    await advance(1);
    expect(server.count()).toBe(2);
    await advance(RENEWAL_AFTER - 1);
    expect(server.count()).toBe(2);
  });
});

describe('R8 time: the real clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('R8: a jump of the wall clock against the monotonic one is noticed within a second; steady time is not a jump', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date', 'performance'] });
    let jumps = 0;
    const unwatch = systemClock.watchJumps(() => (jumps += 1));
    vi.advanceTimersByTime(10 * JUMP_POLL_MS);
    expect(jumps).toBe(0);
    vi.setSystemTime(Date.now() + 2 * HOUR);
    vi.advanceTimersByTime(JUMP_POLL_MS);
    expect(jumps).toBe(1);
    vi.setSystemTime(Date.now() - HOUR);
    vi.advanceTimersByTime(JUMP_POLL_MS);
    expect(jumps).toBe(2);
    unwatch();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('R8: the monotonic clock does not follow the wall clock', () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    const before = systemClock.monotonic();
    vi.setSystemTime(Date.now() + 2 * HOUR);
    expect(systemClock.monotonic() - before).toBeLessThan(SECOND);
  });
});
