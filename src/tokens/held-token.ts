import type { TokenState } from '../stores/types.js';
import type { ClockReading } from '../util/clock.js';
import { ActiveToken } from './active-token.js';
import { tokenNow } from './token-age.js';

/**
 * The access token one account holds, its generation (T8: tokens obtained by this process are
 * counted) and when it began on both clocks (R8: its age is read on both, the larger wins).
 */
export class HeldToken {
  #token: ActiveToken | undefined;
  #start: ClockReading | undefined;
  #generation = 0;

  get token(): ActiveToken | undefined {
    return this.#token;
  }

  /** When the held token began on both clocks: its request's send, or its adoption from the store. */
  get start(): ClockReading | undefined {
    return this.#start;
  }

  get generation(): number {
    return this.#generation;
  }

  /** R8: "now" on the held token's own clock (its start plus its age on both clocks); the wall clock when none is held. */
  now(reading: ClockReading): number {
    return this.#start === undefined ? reading.wall : tokenNow(this.#start, reading);
  }

  /** The held token if it is still valid at `reading`, else undefined. */
  validAt(reading: ClockReading): ActiveToken | undefined {
    const token = this.#token;
    return token !== undefined && this.now(reading) < token.expiresAt ? token : undefined;
  }

  /** Holds `state`'s token from now on, as the next generation; `start` is when it began on both clocks. */
  hold(state: TokenState, start: ClockReading): ActiveToken {
    this.#start = start;
    this.#generation += 1;
    this.#token = new ActiveToken(
      state.accessToken,
      this.#generation,
      state.obtainedAt,
      state.expiresAt,
      state.lifetimeMs,
    );
    return this.#token;
  }
}
