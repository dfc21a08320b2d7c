import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StoredToken, StoreLock, TokenState, TokenStore } from '../../src/stores/types.js';
import { Secret } from '../../src/util/secret.js';
import { waitFor } from '../helpers/ports.js';

export interface TokenStoreFixture {
  store: TokenStore;
  /** Moves the store's lock clock forward; stores on real time pass a function that really waits. */
  advanceTime?: (ms: number) => Promise<void>;
  /** Shared stores only: a second store instance on the same backing storage. */
  other?: () => Promise<TokenStore>;
  cleanup: () => Promise<void>;
}

/** Small, so a store on real time (Redis) pays little for the expiry tests. */
const LOCK_TTL_MS = 200;

let statesMade = 0;

/** A state whose secrets and times are unique to this call, so a leak or a mix-up is unmistakable. */
export function makeTokenState(label: string, overrides: Partial<TokenState> = {}): TokenState {
  const obtainedAt = Date.parse('2026-01-01T00:00:00Z') + ++statesMade * 1000;
  return {
    accessToken: new Secret(`access-${label}-${randomUUID()}`),
    refreshToken: new Secret(`refresh-${label}-${randomUUID()}`),
    obtainedAt,
    expiresAt: obtainedAt + 300_000,
    lifetimeMs: 300_000,
    ...overrides,
  };
}

function expectSameState(actual: TokenState | undefined, expected: TokenState): void {
  expect(actual).toBeDefined();
  if (actual === undefined) return;
  expect(actual.accessToken.reveal()).toBe(expected.accessToken.reveal());
  expect(actual.refreshToken?.reveal()).toBe(expected.refreshToken?.reveal());
  expect(actual.obtainedAt).toBe(expected.obtainedAt);
  expect(actual.expiresAt).toBe(expected.expiresAt);
  expect(actual.lifetimeMs).toBe(expected.lifetimeMs);
  expect(actual.credentials).toBe(expected.credentials);
}

function secretsOf(state: TokenState): string[] {
  return [state.accessToken.reveal(), ...(state.refreshToken === undefined ? [] : [state.refreshToken.reveal()])];
}

/**
 * THE store conformance suite (STYLE.md, after oauth2-proxy): every TokenStore runs it, and
 * the memory store, the reference, defines what passing means. `factory` is called once per
 * test and must return an empty store.
 */
/** `shared` stores (Redis) also run the cross-instance tests; their fixtures must provide `other`. */
/**
 * Saves new states of `account` through `writer` until `heard()` counts more than before: a
 * replica's subscription may still be coming back, and a save announced before it is missed.
 */
export async function saveUntilHeard(writer: TokenStore, heard: () => number, label: string, account = 'acct') {
  const before = heard();
  await waitFor(`a save heard (${label})`, async () => {
    await writer.save(account, makeTokenState(label));
    return heard() > before;
  });
}

export function describeTokenStore(
  name: string,
  factory: () => Promise<TokenStoreFixture>,
  options: { shared?: boolean } = {},
): void {
  describe(`TokenStore contract: ${name}`, () => {
    let fixture: TokenStoreFixture;
    let store: TokenStore;
    const advance = (ms: number): Promise<void> =>
      fixture.advanceTime === undefined ? new Promise((resolve) => setTimeout(resolve, ms)) : fixture.advanceTime(ms);

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    describe('T9 persistence', () => {
      it('T9: load of an account never saved is undefined', async () => {
        expect(await store.load('nobody')).toBeUndefined();
      });

      it('T9: save then load round-trips every field; secrets compare equal with reveal()', async () => {
        const state = makeTokenState('roundtrip');
        const result = await store.save('acct', state);
        expect(result.saved).toBe(true);
        const loaded = await store.load('acct');
        expectSameState(loaded?.state, state);
        expect(loaded?.state.accessToken).toBeInstanceOf(Secret);
        expect(loaded?.state.refreshToken).toBeInstanceOf(Secret);
      });
    });

    describe('H2 whose chain a record is', () => {
      it("H2: a record keeps the fingerprint of its chain's credentials; one saved without it loads without it", async () => {
        const marked = makeTokenState('marked', { credentials: `cf1:${'A'.repeat(43)}` });
        await store.save('marked', marked);
        expectSameState((await store.load('marked'))?.state, marked);
        if (fixture.other !== undefined) {
          const other = await fixture.other();
          expectSameState((await other.load('marked'))?.state, marked);
          await other.close();
        }
        const unmarked = makeTokenState('unmarked');
        await store.save('unmarked', unmarked);
        expect((await store.load('unmarked'))?.state.credentials).toBeUndefined();
        // Another credentials' chain replaces it by compare-and-set on the revision read.
        const current = await store.load('marked');
        const replaced = await store.save('marked', unmarked, current?.revision ?? null);
        expect(replaced.saved).toBe(true);
        expect((await store.load('marked'))?.state.credentials).toBeUndefined();
      });
    });

    describe('T3 rotating refresh tokens', () => {
      it('T3: a state without a refresh token loads with refreshToken undefined', async () => {
        const state = makeTokenState('no-refresh', { refreshToken: undefined });
        await store.save('acct', state);
        const loaded = await store.load('acct');
        expectSameState(loaded?.state, state);
        expect(loaded?.state.refreshToken).toBeUndefined();
      });

      it('T3: a newer save replaces the refresh token: the used one is never loaded again', async () => {
        const first = makeTokenState('first');
        const second = makeTokenState('second');
        await store.save('acct', first);
        await store.save('acct', second);
        const loaded = await store.load('acct');
        expectSameState(loaded?.state, second);
      });
    });

    describe('records', () => {
      it('revisions start at 1 and grow by 1 with every save; save returns the stored record', async () => {
        for (let expected = 1; expected <= 4; expected++) {
          const state = makeTokenState(`rev${expected}`);
          const result = await store.save('acct', state);
          expect(result.saved).toBe(true);
          if (!result.saved) return;
          expect(result.record.revision).toBe(expected);
          expectSameState(result.record.state, state);
          expect((await store.load('acct'))?.revision).toBe(expected);
        }
      });

      it('accounts are independent: revisions and states of one never touch another', async () => {
        const a = makeTokenState('a');
        const b1 = makeTokenState('b1');
        const b2 = makeTokenState('b2');
        await store.save('a', a);
        await store.save('b', b1);
        await store.save('b', b2);
        const loadedA = await store.load('a');
        const loadedB = await store.load('b');
        expect(loadedA?.revision).toBe(1);
        expectSameState(loadedA?.state, a);
        expect(loadedB?.revision).toBe(2);
        expectSameState(loadedB?.state, b2);
      });

      it('load returns a copy: changing it does not change the store', async () => {
        const state = makeTokenState('copy');
        await store.save('acct', state);
        const loaded = await store.load('acct');
        if (loaded === undefined) throw new Error('nothing loaded');
        loaded.state.expiresAt = 0;
        loaded.revision = 99;
        const again = await store.load('acct');
        expect(again?.revision).toBe(1);
        expect(again?.state.expiresAt).toBe(state.expiresAt);
      });
    });

    describe('F6 no secret in any output', () => {
      it('F6: secrets never appear in JSON.stringify or util.inspect of what save and load return', async () => {
        const state = makeTokenState('leak');
        const saved = await store.save('acct', state);
        const loaded = await store.load('acct');
        for (const shown of [
          JSON.stringify(saved),
          JSON.stringify(loaded),
          inspect(saved, { depth: 10 }),
          inspect(loaded, { depth: 10 }),
        ]) {
          for (const secret of secretsOf(state)) expect(shown).not.toContain(secret);
        }
        expect(JSON.stringify(loaded)).toContain('[redacted]');
      });
    });

    describe('T10 replicas sharing a store', () => {
      it('T10: expectedRevision null saves only when nothing is stored yet', async () => {
        const first = makeTokenState('first');
        const created = await store.save('acct', first, null);
        expect(created.saved).toBe(true);
        if (created.saved) expect(created.record.revision).toBe(1);

        const refused = await store.save('acct', makeTokenState('second'), null);
        expect(refused.saved).toBe(false);
        if (refused.saved) return;
        expect(refused.current?.revision).toBe(1);
        expectSameState(refused.current?.state, first);
      });

      it('T10: a stale expectedRevision fails, returns the current record and leaves it unchanged', async () => {
        await store.save('acct', makeTokenState('one'));
        const two = makeTokenState('two');
        await store.save('acct', two);

        const stale = await store.save('acct', makeTokenState('stale'), 1);
        expect(stale.saved).toBe(false);
        if (stale.saved) return;
        expect(stale.current?.revision).toBe(2);
        expectSameState(stale.current?.state, two);

        const after = await store.load('acct');
        expect(after?.revision).toBe(2);
        expectSameState(after?.state, two);
      });

      it('T10: a number as expectedRevision fails when nothing is stored, with current undefined', async () => {
        const result = await store.save('acct', makeTokenState('ghost'), 1);
        expect(result).toEqual({ saved: false, current: undefined });
        expect(await store.load('acct')).toBeUndefined();
      });

      it('T10: a state re-written after the store lost its data gets a revision above the one the writer knew', async () => {
        // The store is empty (as after a Redis restart); the writer last knew revision 5.
        const lost = await store.save('acct', makeTokenState('rewritten'), 5);
        expect(lost).toEqual({ saved: false, current: undefined });
        const rewritten = await store.save('acct', makeTokenState('rewritten'), null, 5);
        expect(rewritten.saved).toBe(true);
        if (rewritten.saved) expect(rewritten.record.revision).toBe(6);
        expect((await store.load('acct'))?.revision).toBe(6);
        // Revisions go on growing from there.
        const next = await store.save('acct', makeTokenState('next'), 6);
        if (next.saved) expect(next.record.revision).toBe(7);
        expect(next.saved).toBe(true);
      });

      it('T10: the current expectedRevision succeeds and makes the next revision', async () => {
        await store.save('acct', makeTokenState('one'));
        const next = makeTokenState('next');
        const result = await store.save('acct', next, 1);
        expect(result.saved).toBe(true);
        if (result.saved) expect(result.record.revision).toBe(2);
        const loaded = await store.load('acct');
        expect(loaded?.revision).toBe(2);
        expectSameState(loaded?.state, next);
      });

      it('T10: of 20 parallel compare-and-set saves from one revision, exactly one succeeds', async () => {
        await store.save('acct', makeTokenState('base'));
        const candidates = Array.from({ length: 20 }, (_, i) => makeTokenState(`candidate${i}`));
        const results = await Promise.all(candidates.map((state) => store.save('acct', state, 1)));

        const winners = results.flatMap((result, i) => (result.saved ? [candidates[i]] : []));
        expect(winners).toHaveLength(1);
        const loaded = await store.load('acct');
        expect(loaded?.revision).toBe(2);
        const winner = winners[0];
        if (winner !== undefined) expectSameState(loaded?.state, winner);
        for (const result of results) {
          if (!result.saved) expect(result.current?.revision).toBe(2);
        }
      });

      it('T10: of 20 parallel creations (expectedRevision null), exactly one succeeds', async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.save('acct', makeTokenState(`create${i}`), null)),
        );
        expect(results.filter((result) => result.saved)).toHaveLength(1);
        expect((await store.load('acct'))?.revision).toBe(1);
      });
    });

    describe('compare-and-set', () => {
      it('20 parallel unconditional saves to 20 accounts are all kept', async () => {
        const states = Array.from({ length: 20 }, (_, i) => makeTokenState(`parallel${i}`));
        const results = await Promise.all(states.map((state, i) => store.save(`account-${i}`, state)));
        expect(results.every((result) => result.saved)).toBe(true);
        const loaded = await Promise.all(states.map((_, i) => store.load(`account-${i}`)));
        loaded.forEach((record: StoredToken | undefined, i) => {
          expect(record?.revision).toBe(1);
          const state = states[i];
          if (state !== undefined) expectSameState(record?.state, state);
        });
      });
    });

    describe('T10 locks', () => {
      /** Takes the lock, lets it expire, and has a second holder take it. */
      async function expireAndRetake(): Promise<{ first: StoreLock | undefined; second: StoreLock | undefined }> {
        const first = await store.obtainLock('acct', LOCK_TTL_MS);
        expect(first).toBeDefined();
        await advance(LOCK_TTL_MS + 50);
        const second = await store.obtainLock('acct', LOCK_TTL_MS);
        expect(second).toBeDefined();
        return { first, second };
      }

      it('T10: a held lock cannot be obtained again until it is released', async () => {
        const lock = await store.obtainLock('acct', LOCK_TTL_MS);
        expect(lock).toBeDefined();
        expect(await store.obtainLock('acct', LOCK_TTL_MS)).toBeUndefined();
        await lock?.release();
        const next = await store.obtainLock('acct', LOCK_TTL_MS);
        expect(next).toBeDefined();
        await next?.release();
      });

      it("T10: one account's lock does not block another account", async () => {
        const a = await store.obtainLock('a', LOCK_TTL_MS);
        const b = await store.obtainLock('b', LOCK_TTL_MS);
        expect(a).toBeDefined();
        expect(b).toBeDefined();
        await a?.release();
        await b?.release();
      });

      it('T10: an expired lock can be taken by another holder', async () => {
        const { second } = await expireAndRetake();
        await second?.release();
      });

      it("T10: a holder whose lock expired and was re-taken cannot release the new holder's lock", async () => {
        const { first, second } = await expireAndRetake();
        await first?.release();
        expect(await store.obtainLock('acct', LOCK_TTL_MS)).toBeUndefined();
        await second?.release();
        expect(await store.obtainLock('acct', LOCK_TTL_MS)).toBeDefined();
      });

      it('T10: extend keeps the lock past its first expiry, until the extension runs out', async () => {
        const lock = await store.obtainLock('acct', LOCK_TTL_MS);
        await advance(LOCK_TTL_MS / 2);
        expect(await lock?.extend(LOCK_TTL_MS * 2)).toBe(true); // now due at 2.5 x TTL
        // Wide margins: on real time (Redis) a timer fires late, never early.
        await advance(LOCK_TTL_MS); // 1.5 x TTL: past the first expiry, inside the extension
        expect(await store.obtainLock('acct', LOCK_TTL_MS)).toBeUndefined();
        await advance(LOCK_TTL_MS * 1.5); // 3 x TTL: past the extension
        const next = await store.obtainLock('acct', LOCK_TTL_MS);
        expect(next).toBeDefined();
        await next?.release();
      });

      it('T10: extend after the lock expired and was re-taken returns false and leaves the new holder alone', async () => {
        const { first, second } = await expireAndRetake();
        expect(await first?.extend(LOCK_TTL_MS * 10)).toBe(false);
        await second?.release();
        expect(await store.obtainLock('acct', LOCK_TTL_MS)).toBeDefined();
      });

      it('T10: of 20 parallel obtains, exactly one gets the lock', async () => {
        const locks = await Promise.all(Array.from({ length: 20 }, () => store.obtainLock('acct', LOCK_TTL_MS)));
        expect(locks.filter((lock) => lock !== undefined)).toHaveLength(1);
      });
    });

    if (!options.shared) {
      it('is not shared: other processes never write to it', () => {
        expect(store.shared).toBe(false);
      });
    }

    if (options.shared)
      describe('shared storage (a second instance on the same backing storage)', () => {
        let onCleanup: Array<() => Promise<void>> = [];
        afterEach(async () => {
          for (const close of onCleanup) await close();
          onCleanup = [];
        });

        async function openOther(): Promise<TokenStore> {
          if (fixture.other === undefined) throw new Error(`${name}: a shared store's fixture must provide other()`);
          const other = await fixture.other();
          // The fixture's cleanup owns the backing storage; this closes the second client.
          onCleanup.push(() => other.close());
          return other;
        }
        it('declares itself shared', async () => {
          await openOther();
          expect(store.shared).toBe(true);
        });

        describe('T10 replicas sharing a store', () => {
          it('T10: a save in one instance is visible to load in the other', async () => {
            const other = await openOther();
            const state = makeTokenState('shared');
            await store.save('acct', state);
            const loaded = await other.load('acct');
            expect(loaded?.revision).toBe(1);
            expectSameState(loaded?.state, state);
          });

          it("T10: a save in one instance notifies the other instance's subscribers for that account", async () => {
            const other = await openOther();
            const onChange = vi.fn();
            const unsubscribe = other.subscribe('acct', onChange);
            try {
              await store.save('acct', makeTokenState('notify'));
              await vi.waitFor(() => expect(onChange).toHaveBeenCalled(), { timeout: 5000, interval: 20 });
            } finally {
              unsubscribe();
            }
          });

          it('T10: after unsubscribe, saves no longer call the listener', async () => {
            const other = await openOther();
            const unsubscribed = vi.fn();
            const sentinel = vi.fn();
            other.subscribe('gone', unsubscribed)();
            const unsubscribeSentinel = other.subscribe('sentinel', sentinel);
            try {
              await store.save('gone', makeTokenState('gone'));
              await store.save('sentinel', makeTokenState('sentinel'));
              // Notifications arrive in order: once the later one is in, the earlier one would be too.
              await vi.waitFor(() => expect(sentinel).toHaveBeenCalled(), { timeout: 5000, interval: 20 });
              expect(unsubscribed).not.toHaveBeenCalled();
            } finally {
              unsubscribeSentinel();
            }
          });

          it('T10: compare-and-set holds across instances', async () => {
            const other = await openOther();
            await store.save('acct', makeTokenState('base'));
            const results = await Promise.all([
              store.save('acct', makeTokenState('here'), 1),
              other.save('acct', makeTokenState('there'), 1),
            ]);
            expect(results.filter((result) => result.saved)).toHaveLength(1);
            expect((await other.load('acct'))?.revision).toBe(2);
          });

          it('T10: the lock is exclusive across instances and released for both', async () => {
            const other = await openOther();
            const lock = await store.obtainLock('acct', LOCK_TTL_MS * 10);
            expect(lock).toBeDefined();
            expect(await other.obtainLock('acct', LOCK_TTL_MS)).toBeUndefined();
            await lock?.release();
            const theirs = await other.obtainLock('acct', LOCK_TTL_MS);
            expect(theirs).toBeDefined();
            expect(await store.obtainLock('acct', LOCK_TTL_MS)).toBeUndefined();
            await theirs?.release();
          });
        });
      });
  });
}
