import { describe, expect, it } from 'vitest';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { StoredToken, TokenStore } from '../../src/stores/types.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ScriptedTokenServer } from '../helpers/scripted-token-server.js';
import type { TokenManager } from '../../src/tokens/token-manager.js';
import { testTokenManager } from '../helpers/token-manager-setup.js';

/*
 * T10 on a fake clock: several TokenManagers sharing one store instance behave like replicas
 * sharing Redis (lock, re-read after the lock, compare-and-set), deterministically.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;

function replicas(count: number, store: TokenStore | ((index: number) => TokenStore), random = () => 0.5) {
  const clock = new FakeClock();
  const server = new ScriptedTokenServer(() => clock.now());
  server.lifetime = 60;
  const managers = Array.from({ length: count }, (_, index) =>
    testTokenManager({
      clock,
      store: typeof store === 'function' ? store(index) : store,
      send: (request, options) => server.send(request, options),
      // Replicas do not share a random source: their schedules differ by a little jitter.
      random: () => (random() + index * 0.3) % 1,
    }),
  );
  const settle = () => Promise.all(managers.map((manager) => manager.settled())).then(() => undefined);
  return { clock, server, managers, advance: (ms: number) => clock.advance(ms, settle), settle };
}

describe('T10: replicas sharing one store', () => {
  it('T10: three replicas starting together make one login; the others adopt its token after re-reading the store', async () => {
    const { managers, server, advance } = replicas(3, new MemoryTokenStore());
    await Promise.all(managers.map((manager) => manager.start()));
    await advance(5 * SECOND);
    expect(server.count('login')).toBe(1);
    const fingerprints = managers.map((manager) => manager.current()?.fingerprint);
    expect(new Set(fingerprints).size).toBe(1);
    expect(fingerprints[0]).toBeDefined();
  });

  it('T10: over an hour of 60 s tokens, three replicas make as many token requests as one process, and never reuse a refresh token', async () => {
    const { managers, server, advance } = replicas(3, new MemoryTokenStore());
    await Promise.all(managers.map((manager) => manager.start()));
    await advance(60 * MINUTE);
    const oneProcess = 1 + (60 * MINUTE) / (0.8 * 0.95 * 60 * SECOND);
    expect(server.count()).toBeLessThanOrEqual(Math.ceil(oneProcess));
    expect(server.reuse).toBe(0);
    expect(server.count('login')).toBe(1);
    for (const manager of managers) expect(manager.current()).toBeDefined();
  });

  it('T10, T3: after the shared store loses its data (Redis restarted empty), the replica refreshing first re-writes the state above the revisions the others hold; they adopt it and no refresh token is sent twice', async () => {
    const backing = { store: new MemoryTokenStore() };
    const restartable: TokenStore = {
      type: 'memory',
      shared: false,
      load: (account) => backing.store.load(account),
      save: (account, state, expected, lastKnown) => backing.store.save(account, state, expected, lastKnown),
      obtainLock: (account, ttl) => backing.store.obtainLock(account, ttl),
      subscribe: () => () => undefined,
      close: async () => undefined,
    };
    const { managers, server, advance } = replicas(3, restartable);
    await Promise.all(managers.map((manager) => manager.start()));
    await advance(5 * MINUTE);
    expect(server.count('refresh')).toBeGreaterThan(2);
    backing.store = new MemoryTokenStore();
    await advance(10 * MINUTE);
    expect(server.reuse).toBe(0);
    expect(server.count('login')).toBe(1);
    expect((await restartable.load('acct'))?.revision).toBeGreaterThan(server.count('refresh'));
    expect(new Set(managers.map((manager) => manager.current()?.fingerprint)).size).toBe(1);
  });

  it('T10: a replica whose refresh is rejected because another rotated the chain re-reads the store and adopts it, without a login', async () => {
    const shared = new MemoryTokenStore();
    // Replica 1 reads a stale view of the store once (as if it had missed the other's save).
    const view: { stale?: StoredToken; serveStale: boolean } = { serveStale: false };
    const staleView: TokenStore = {
      type: 'memory',
      shared: false,
      load: async (account) => {
        if (!view.serveStale) return shared.load(account);
        view.serveStale = false;
        return view.stale;
      },
      save: (account, state, expected, lastKnown) => shared.save(account, state, expected, lastKnown),
      obtainLock: (account, ttl) => shared.obtainLock(account, ttl),
      subscribe: () => () => undefined,
      close: async () => undefined,
    };
    const { managers, server, advance, clock } = replicas(2, (index) => (index === 0 ? shared : staleView));
    const [first, second] = managers as [TokenManager, TokenManager];
    await first.start();
    await advance(SECOND);
    view.stale = await shared.load('acct');
    await second.start();
    await advance(SECOND);
    // The first replica refreshes (rotating the chain); the second then reads the old state once.
    await first.settled();
    first.requestRefresh('admin');
    await advance(10 * SECOND);
    view.serveStale = true;
    second.requestRefresh('admin');
    await advance(SECOND);
    // login, the first replica's refresh, the second's refresh with the spent token (rejected), and no login after.
    expect(server.sent.map((request) => request.kind)).toEqual(['login', 'refresh', 'refresh']);
    expect(second.status().counts.refresh.rejected).toBe(1);
    expect(second.status().counts.login.success).toBe(0);
    expect(second.current()?.fingerprint).toBe(first.current()?.fingerprint);
    expect(second.status().ready).toBe(true);
    await advance(2 * MINUTE);
    expect(server.count('login')).toBe(1);
    expect(clock.now()).toBeGreaterThan(0);
  });
});
