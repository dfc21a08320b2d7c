import { describe, expect, it } from 'vitest';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { TokenStore } from '../../src/stores/types.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { testTokenManager } from '../helpers/token-manager-setup.js';
import { SharedStoreHub, SoakTokenServer } from '../soak/world.js';

/*
 * T3 across processes: a refresh token the server rejected (and so consumed) is spent for every
 * process that shares the store, and for this one after a restart: the stored state forgets it.
 */

const MINUTE = 60_000;
function world(stores: (clock: FakeClock) => TokenStore[]) {
  const clock = new FakeClock();
  const server = new SoakTokenServer(() => clock.now(), 600);
  const manager = (store: TokenStore, index: number) =>
    testTokenManager({ clock, store, send: (request) => server.send(request), random: () => (0.5 + index * 0.3) % 1 });
  const managers = stores(clock).map(manager);
  const settle = () => Promise.all(managers.map((m) => m.settled())).then(() => undefined);
  return { clock, server, managers, manager, advance: (ms: number) => clock.advance(ms, settle) };
}

describe('T3 rotating refresh tokens: a rejected refresh token is spent for everyone', () => {
  it('T10: after one replica had a refresh rejected, the other never sends that refresh token', async () => {
    const hub = new SharedStoreHub(() => Date.now());
    const { server, managers, advance } = world(() => [hub.view(0), hub.view(1)]);
    await Promise.all(managers.map((m) => m.start()));
    await advance(1_000);
    server.mode = 'reject-refresh';
    await advance(15 * MINUTE);
    expect(server.reusedRefreshTokens).toEqual([]);
  });

  it('T9: after a rejected refresh, the stored state no longer holds that refresh token (a restart cannot send it)', async () => {
    const store = new MemoryTokenStore();
    const { server, managers, advance, manager, clock } = world(() => [store]);
    await managers[0]!.start();
    await advance(1_000);
    server.mode = 'reject-refresh';
    // The renewal at 0.8 x 600 s is a refresh, rejected; the login that follows is held by the guard.
    await advance(8.1 * MINUTE);
    await managers[0]!.stop();
    server.mode = 'ok';
    const restarted = manager(store, 0);
    await restarted.start();
    await clock.advance(MINUTE, () => restarted.settled());
    await restarted.stop();
    expect(server.reusedRefreshTokens).toEqual([]);
  });
});

describe('T4 rejected refresh falls back to a login', () => {
  it('T4: a stored chain whose refresh token this process knows is spent leads to a login, never to a stalled account', async () => {
    const hub = new SharedStoreHub(() => Date.now());
    const { server, managers, advance } = world(() => [hub.view(0)]);
    const [manager] = managers;
    await manager!.start();
    await advance(1_000);
    const stale = await hub.view(1).load('acct');
    server.mode = 'reject-refresh';
    await advance(8.1 * MINUTE); // the scheduled refresh is rejected
    await advance(1.5 * MINUTE); // the login that follows it
    const before = server.requestTimes.length;
    // A replica that missed all of this writes the old chain back (its refresh token is spent).
    await hub.view(1).save('acct', stale!.state);
    server.mode = 'ok';
    await advance(20 * MINUTE);
    expect(server.reusedRefreshTokens).toEqual([]);
    expect(server.requestTimes.length).toBeGreaterThan(before);
    expect(manager!.current()).toBeDefined();
    expect(manager!.status().state).toBe('valid');
  });
});

describe('T10 replicas sharing a store: never two refreshes with one refresh token', () => {
  it('T10: with the store unreachable, replicas that can log in do so instead of spending the shared refresh token unlocked', async () => {
    const hub = new SharedStoreHub(() => Date.now());
    const { server, managers, advance } = world(() => [hub.view(0), hub.view(1)]);
    await Promise.all(managers.map((m) => m.start()));
    await advance(1_000);
    hub.down = true;
    await advance(30 * MINUTE);
    hub.down = false;
    await advance(30 * MINUTE);
    expect(server.reusedRefreshTokens).toEqual([]);
    expect(managers.every((m) => m.current() !== undefined)).toBe(true);
  });
});
