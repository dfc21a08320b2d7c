import { describe, expect, it } from 'vitest';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { TokenState, TokenStore } from '../../src/stores/types.js';
import { SharedChain } from '../../src/tokens/shared-chain.js';
import type { StoreOperation } from '../../src/tokens/types.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SECOND = 1000;
const TIMEOUT_MS = 10 * SECOND;
/** timeout + the 5 s margin. */
const LOCK_TTL_MS = 15 * SECOND;

function state(clock: FakeClock, refreshToken: string | undefined, lifetimeMs = 60 * SECOND): TokenState {
  const obtainedAt = clock.now();
  return {
    accessToken: new Secret(`tok-${refreshToken}`),
    refreshToken: refreshToken === undefined ? undefined : new Secret(refreshToken),
    obtainedAt,
    expiresAt: obtainedAt + lifetimeMs,
    lifetimeMs,
  };
}

/** Replicas of one account on one store (as replicas share Redis), on a fake clock. */
function replicas(store?: (clock: FakeClock) => TokenStore) {
  const clock = new FakeClock();
  const shared = store?.(clock) ?? new MemoryTokenStore({ now: () => clock.now() });
  const log = captureLogger();
  const storeErrors: StoreOperation[] = [];
  const chain = () =>
    new SharedChain({
      account: 'acct',
      store: shared,
      clock,
      timeoutMs: TIMEOUT_MS,
      events: { storeError: (operation) => storeErrors.push(operation) },
      log: log.logger,
    });
  return { clock, store: shared, chain, log, storeErrors };
}

/** A store whose every operation fails until `down` is false again. */
function flakyStore(clock: FakeClock): TokenStore & { down: boolean } {
  const backing = new MemoryTokenStore({ now: () => clock.now() });
  const fail = async (): Promise<never> => {
    throw new Error('connect ECONNREFUSED');
  };
  const store = {
    type: 'redis' as const,
    shared: false,
    down: true,
    load: (account: string) => (store.down ? fail() : backing.load(account)),
    save: (account: string, s: TokenState, expected?: number | null, lastKnown?: number) =>
      store.down ? fail() : backing.save(account, s, expected, lastKnown),
    obtainLock: (account: string, ttl: number) => (store.down ? fail() : backing.obtainLock(account, ttl)),
    subscribe: () => () => undefined,
    close: async () => undefined,
  };
  return store;
}

describe('T10 the chain shared with other replicas', () => {
  it('T10: under the lock the store is re-read: a state another replica saved meanwhile is handed back to adopt', async () => {
    const { clock, chain } = replicas();
    const [first, second] = [chain(), chain()];
    expect(await first.save(state(clock, 'ref-1'))).toEqual({ type: 'saved' });
    expect(first.revision).toBe(1);
    const attempt = await second.lockForRequest(undefined);
    if (attempt.type !== 'locked') throw new Error(`expected the lock, got ${attempt.type}`);
    expect(attempt.newer?.revision).toBe(1);
    expect(attempt.newer?.state.refreshToken?.reveal()).toBe('ref-1');
    second.holdRevision(1);
    await attempt.lock.release();
    const again = await second.lockForRequest(undefined);
    expect(again.type === 'locked' && again.newer).toBeUndefined();
  });

  it('T10: while another replica holds the lock, the chain says so and when to look again', async () => {
    const { clock, chain } = replicas();
    const held = await chain().lockForRequest(undefined);
    expect(held.type).toBe('locked');
    expect(await chain().lockForRequest(undefined)).toEqual({
      type: 'held_elsewhere',
      lookAgainAt: clock.now() + SECOND,
    });
  });

  it('T10: the lock lives a request timeout plus a margin, and is extended while the request runs', async () => {
    const { clock, chain } = replicas();
    const [slow, other] = [chain(), chain()];
    const kept = await slow.lockForRequest(undefined);
    if (kept.type !== 'locked') throw new Error('no lock');
    kept.lock.keepAlive();
    await clock.advance(3 * LOCK_TTL_MS);
    expect((await other.lockForRequest(undefined)).type).toBe('held_elsewhere');
    await kept.lock.release();
    expect(clock.pendingTimers()).toBe(0);
    const next = await other.lockForRequest(undefined);
    expect(next.type).toBe('locked');
    // Not kept alive: it expires after its ttl, and another replica may take it.
    await clock.advance(LOCK_TTL_MS);
    expect((await slow.lockForRequest(undefined)).type).toBe('locked');
  });

  it('T10: with the store unreachable the valid token is served (retry no later than two request timeouts before expiry); a token about to expire, or none, is renewed without the lock', async () => {
    const { clock, chain, storeErrors, log } = replicas(flakyStore);
    const replica = chain();
    const expiresAt = clock.now() + 60 * SECOND;
    expect(await replica.lockForRequest(expiresAt)).toEqual({
      type: 'unreachable',
      retryNotAfter: expiresAt - 2 * TIMEOUT_MS,
    });
    await clock.advance(40 * SECOND);
    expect(await replica.lockForRequest(expiresAt)).toEqual({ type: 'renew_unlocked' });
    expect(await replica.lockForRequest(undefined)).toEqual({ type: 'renew_unlocked' });
    expect(storeErrors).toEqual(['lock', 'lock', 'lock']);
    expect(replica.problem).toBe('redis store: connect ECONNREFUSED');
    // The problem is logged once, not once per failure.
    expect(log.lines().filter((line) => line.level === 50)).toHaveLength(1);
    expect(
      log.lines().filter((line) => String(line.msg).startsWith('renewing the token without the store lock')),
    ).toHaveLength(2);
  });

  it('T10: a store that cannot be reached keeps our state in memory (unsaved); the problem clears once it answers again', async () => {
    const { clock, store, chain, log } = replicas(flakyStore);
    const replica = chain();
    expect(await replica.save(state(clock, 'ref-1'))).toEqual({ type: 'unsaved' });
    expect(replica.problem).toMatch(/redis store/);
    (store as ReturnType<typeof flakyStore>).down = false;
    expect(await replica.load()).toBeUndefined();
    expect(replica.problem).toBeUndefined();
    expect(log.lines().some((line) => line.msg === 'redis store reachable again')).toBe(true);
  });

  it('T10: saves are compare-and-set against the revision held: a replica that saved meanwhile supersedes ours, and its state comes back to adopt', async () => {
    const { clock, chain } = replicas();
    const [first, second] = [chain(), chain()];
    await first.save(state(clock, 'ref-1'));
    const outcome = await second.save(state(clock, 'ref-other'));
    expect(outcome.type).toBe('superseded');
    expect(outcome.type === 'superseded' && outcome.newer?.state.refreshToken?.reveal()).toBe('ref-1');
    expect(second.revision).toBeUndefined();
  });

  it('T10, T3: a store that lost its data gets our state afresh, with a revision above the one we held', async () => {
    const backing = { store: undefined as unknown as MemoryTokenStore };
    const { clock, chain } = replicas((c) => {
      backing.store = new MemoryTokenStore({ now: () => c.now() });
      return {
        type: 'memory',
        shared: false,
        load: (account) => backing.store.load(account),
        save: (account, s, expected, lastKnown) => backing.store.save(account, s, expected, lastKnown),
        obtainLock: (account, ttl) => backing.store.obtainLock(account, ttl),
        subscribe: () => () => undefined,
        close: async () => undefined,
      };
    });
    const replica = chain();
    await replica.save(state(clock, 'ref-1'));
    await replica.save(state(clock, 'ref-2'));
    expect(replica.revision).toBe(2);
    backing.store = new MemoryTokenStore();
    expect(await replica.save(state(clock, 'ref-3'))).toEqual({ type: 'saved' });
    expect(replica.revision).toBe(3);
    expect((await backing.store.load('acct'))?.revision).toBe(3);
  });

  it('T10: after a rejected refresh, the stored chain is handed back only when it holds another refresh token', async () => {
    const { clock, chain } = replicas();
    const replica = chain();
    expect(await replica.loadOtherChain(new Secret('ref-1'))).toBeUndefined();
    await replica.save(state(clock, 'ref-1'));
    expect(await replica.loadOtherChain(new Secret('ref-1'))).toBeUndefined();
    await replica.save(state(clock, 'ref-2'));
    expect((await replica.loadOtherChain(new Secret('ref-1')))?.state.refreshToken?.reveal()).toBe('ref-2');
    await replica.save(state(clock, undefined));
    expect(await replica.loadOtherChain(new Secret('ref-1'))).toBeUndefined();
  });

  it("T10: a shared store notifies this replica of the others' saves until it stops", () => {
    const { chain } = replicas();
    const calls: string[] = [];
    const subscribing: TokenStore = {
      type: 'redis',
      shared: true,
      load: async () => undefined,
      save: async () => ({ saved: false, current: undefined }),
      obtainLock: async () => undefined,
      subscribe: (account, onChange) => {
        calls.push(`subscribe ${account}`);
        onChange();
        return () => calls.push('unsubscribe');
      },
      close: async () => undefined,
    };
    const replica = new SharedChain({
      account: 'acct',
      store: subscribing,
      clock: new FakeClock(),
      timeoutMs: TIMEOUT_MS,
      events: { storeError: () => undefined },
      log: captureLogger().logger,
    });
    replica.watch(() => calls.push('changed'));
    replica.stop();
    expect(calls).toEqual(['subscribe acct', 'changed', 'unsubscribe']);
    // A store no other process writes to is not watched.
    const local = chain();
    local.watch(() => calls.push('never'));
    local.stop();
    expect(calls).toHaveLength(3);
  });
});
