import type { Clock, TimerHandle } from '../util/clock.js';
import type { ActiveToken } from './active-token.js';
import type { TokenUnavailableError } from './types.js';

interface Waiter {
  /** Only a token of a later generation than this will do (a replay after a rejection, T8). */
  afterGeneration: number;
  resolve(token: ActiveToken): void;
  reject(error: TokenUnavailableError): void;
  /** When its wait ends, on the monotonic clock (its timer's clock, R8). */
  deadline: number;
  timer: TimerHandle;
}

export interface WaitersOptions {
  clock: Clock;
  /** The error a waiter gets when no token can come in time (T7), built when it is given. */
  unavailable(now: number): TokenUnavailableError;
}

/**
 * T7: requests parked until a token of a later generation arrives, each with its own deadline.
 * The owner says when a token arrived (`resolveWith`) and when the next attempt comes too late
 * for some of them (`rejectDueBefore`); a waiter whose deadline passes is answered by its timer.
 */
export class Waiters {
  readonly #o: WaitersOptions;
  readonly #waiters = new Set<Waiter>();

  constructor(options: WaitersOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#waiters.size;
  }

  /**
   * T7: resolves with `held.token` when it is newer than `afterGeneration`, else with the first
   * newer one to arrive within `waitMs`. Rejects at once when the account is `closed`, or when
   * the next attempt (`nextAt`, undefined while one is in flight) comes later than the wait.
   */
  waitAfter(
    afterGeneration: number,
    held: { token: ActiveToken | undefined; now: number; waitMs: number; closed: boolean; nextAt: number | undefined },
  ): Promise<ActiveToken> {
    const { token, now, waitMs, nextAt } = held;
    if (token !== undefined && token.generation > afterGeneration) return Promise.resolve(token);
    // Nothing can arrive in time (next attempt is later than the wait): answer at once.
    if (held.closed || (nextAt !== undefined && nextAt - now > waitMs)) return Promise.reject(this.#o.unavailable(now));
    return this.waitForGenerationAfter(afterGeneration, { now, waitMs });
  }

  /** Resolves with the first token newer than `afterGeneration`; rejects `waitMs` after `now`. */
  waitForGenerationAfter(afterGeneration: number, wait: { now: number; waitMs: number }): Promise<ActiveToken> {
    return new Promise<ActiveToken>((resolve, reject) => {
      const waiter: Waiter = {
        afterGeneration,
        resolve,
        reject,
        deadline: this.#o.clock.monotonic() + (wait.now + wait.waitMs - this.#o.clock.now()),
        timer: this.#o.clock.setTimer(() => {
          this.#waiters.delete(waiter);
          reject(this.#o.unavailable(this.#o.clock.now()));
        }, wait.waitMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Hands `token` (the valid one, if any) to every waiter it is new enough for. */
  resolveWith(token: ActiveToken | undefined): void {
    for (const waiter of this.#waiters) {
      if (token === undefined || token.generation <= waiter.afterGeneration) continue;
      this.#o.clock.clearTimer(waiter.timer);
      this.#waiters.delete(waiter);
      waiter.resolve(token);
    }
  }

  /**
   * Waiters whose deadline comes before the next attempt (at `nextAttemptAt`, a wall-clock time
   * of this moment) cannot be helped: answer them now.
   */
  rejectDueBefore(nextAttemptAt: number | undefined): void {
    if (nextAttemptAt === undefined) return;
    const nextOnMonotonic = this.#o.clock.monotonic() + (nextAttemptAt - this.#o.clock.now());
    for (const waiter of this.#waiters) {
      if (nextOnMonotonic > waiter.deadline) this.#reject(waiter);
    }
  }

  rejectAll(): void {
    for (const waiter of this.#waiters) this.#reject(waiter);
  }

  #reject(waiter: Waiter): void {
    this.#o.clock.clearTimer(waiter.timer);
    this.#waiters.delete(waiter);
    waiter.reject(this.#o.unavailable(this.#o.clock.now()));
  }
}
