import { describe, expect, it } from 'vitest';
import { ActiveToken } from '../../src/tokens/active-token.js';
import { TokenUnavailableError } from '../../src/tokens/types.js';
import { Waiters } from '../../src/tokens/waiters.js';
import { Secret } from '../../src/util/secret.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SECOND = 1000;

function setup() {
  const clock = new FakeClock();
  const refusals: number[] = [];
  const waiters = new Waiters({
    clock,
    unavailable: (now) => {
      refusals.push(now);
      return new TokenUnavailableError('no valid token', 7);
    },
  });
  const token = (generation: number) =>
    new ActiveToken(new Secret(`tok-${generation}`), generation, clock.now(), clock.now() + 60 * SECOND, 60 * SECOND);
  /** Starts a wait and records how it ends. */
  const wait = (afterGeneration: number, waitMs = 2 * SECOND) => {
    const outcome: { token?: ActiveToken; error?: unknown } = {};
    const done = waiters.waitForGenerationAfter(afterGeneration, { now: clock.now(), waitMs }).then(
      (got) => (outcome.token = got),
      (error: unknown) => (outcome.error = error),
    );
    return { outcome, done };
  };
  return { clock, waiters, token, wait, refusals };
}

describe('T7 cold start', () => {
  it('T7: every request waiting for a token gets the one that arrives, and no timer is left behind', async () => {
    const { clock, waiters, token, wait } = setup();
    const waiting = Array.from({ length: 5 }, () => wait(0));
    expect(waiters.size).toBe(5);
    const first = token(1);
    waiters.resolveWith(first);
    await Promise.all(waiting.map((w) => w.done));
    expect(waiting.every((w) => w.outcome.token === first)).toBe(true);
    expect(waiters.size).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('T7: a waiter that gets no token within waitForToken is refused with token_unavailable, at its deadline', async () => {
    const { clock, waiters, wait, refusals } = setup();
    const start = clock.now();
    const waiting = wait(0, 2 * SECOND);
    await clock.advance(2 * SECOND - 1);
    expect(waiting.outcome).toEqual({});
    await clock.advance(1);
    await waiting.done;
    expect(waiting.outcome.error).toBeInstanceOf(TokenUnavailableError);
    expect((waiting.outcome.error as TokenUnavailableError).retryAfterSeconds).toBe(7);
    expect(refusals).toEqual([start + 2 * SECOND]);
    expect(waiters.size).toBe(0);
  });

  it('T7: when the next attempt comes after a waiter deadline, that waiter is answered at once; the others keep waiting', async () => {
    const { clock, waiters, wait } = setup();
    const start = clock.now();
    const short = wait(0, 1 * SECOND);
    const long = wait(0, 10 * SECOND);
    waiters.rejectDueBefore(start + 5 * SECOND);
    await short.done;
    expect(short.outcome.error).toBeInstanceOf(TokenUnavailableError);
    expect(long.outcome).toEqual({});
    waiters.rejectDueBefore(undefined);
    expect(waiters.size).toBe(1);
    expect(clock.pendingTimers()).toBe(1);
  });

  it('T7: on stop every waiter is refused at once', async () => {
    const { clock, waiters, wait } = setup();
    const waiting = [wait(0), wait(3)];
    waiters.rejectAll();
    await Promise.all(waiting.map((w) => w.done));
    expect(waiting.every((w) => w.outcome.error instanceof TokenUnavailableError)).toBe(true);
    expect(waiters.size).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
  });
});

describe('T8 upstream rejection and replay', () => {
  it('T8: a waiter for a replacement takes only a token of a later generation', async () => {
    const { waiters, token, wait } = setup();
    const replay = wait(1);
    waiters.resolveWith(token(1));
    waiters.resolveWith(undefined);
    expect(waiters.size).toBe(1);
    const second = token(2);
    waiters.resolveWith(second);
    await replay.done;
    expect(replay.outcome.token).toBe(second);
  });
});
