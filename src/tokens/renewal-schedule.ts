import type { RefreshPolicy } from '../config/resolve.js';
import type { TokenState } from '../stores/types.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { TokenEvents, TokenTrigger } from './types.js';

/** T2: refreshes land a few percent before `at` x lifetime, so replicas and accounts spread out. */
const SCHEDULE_JITTER = 0.05;
/** T6: the guard is max(minInterval, this fraction of the last lifetime). */
const GUARD_LIFETIME_FRACTION = 0.1;

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
  /** Never retry sooner than `baseMs` (rejected logins: no faster than one a minute). */
  floorAtBase: boolean;
}

/** T5: transient failures back off from 1s, rejected logins from 1m; both cap at 5m. */
export const TRANSIENT_BACKOFF: BackoffPolicy = { baseMs: 1_000, capMs: 300_000, floorAtBase: false };
export const REJECTED_BACKOFF: BackoffPolicy = { baseMs: 60_000, capMs: 300_000, floorAtBase: true };

/** Exponential backoff with full jitter (a random point in [0, base·2^n], capped). */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  const delay = random() * ceiling;
  return policy.floorAtBase ? Math.max(policy.baseMs, delay) : delay;
}

export interface RetryBounds {
  /** A server's Retry-After (R2): the retry comes no sooner; it wins over the rest. */
  notBefore?: number;
  /** The retry comes no later (a store outage must not outlast the token). */
  notAfter?: number;
}

export interface RenewalScheduleOptions {
  clock: Clock;
  policy: Pick<RefreshPolicy, 'at' | 'minIntervalMs'>;
  events: Pick<TokenEvents, 'suppressed'>;
  random: () => number;
  /** Called when the armed time comes, with what armed it. */
  onDue(trigger: TokenTrigger): void;
}

/**
 * When one account's next token request happens: the renewal at `at` x lifetime (T2), the loop
 * guard between two requests (T6), and the backoff after failures (T5, R2). One timer, one
 * pending attempt; the schedule waits for the guard, it never skips it.
 */
export class RenewalSchedule {
  readonly #o: RenewalScheduleOptions;
  #timer: TimerHandle | undefined;
  #nextAt: number | undefined;
  #nextTrigger: TokenTrigger | undefined;
  #lastRequestAt: number | undefined;
  #lastLifetimeMs: number | undefined;
  #failures = 0;
  #stopped = false;

  constructor(options: RenewalScheduleOptions) {
    this.#o = options;
  }

  /** When the next attempt is armed for, if one is. */
  get nextAt(): number | undefined {
    return this.#nextAt;
  }

  get nextTrigger(): TokenTrigger | undefined {
    return this.#nextTrigger;
  }

  get lastRequestAt(): number | undefined {
    return this.#lastRequestAt;
  }

  /** Failed attempts since the last token: the backoff exponent. */
  get failures(): number {
    return this.#failures;
  }

  /** A token request went out at `at`: the guard counts from then (T6). */
  requestSent(at: number): void {
    this.#lastRequestAt = at;
  }

  /** The lifetime of the token in use: the guard keeps a tenth of it (T6). */
  lifetimeSeen(lifetimeMs: number): void {
    this.#lastLifetimeMs = lifetimeMs;
  }

  /** A token was obtained: the next failure backs off from the start again. */
  resetBackoff(): void {
    this.#failures = 0;
  }

  /** T2: `at` x lifetime after the token was obtained, minus a few percent of jitter. */
  dueAt(state: Pick<TokenState, 'obtainedAt' | 'lifetimeMs'>): number {
    return this.#dueAt(state, SCHEDULE_JITTER * this.#o.random());
  }

  /** The latest the renewal of `state` can be due: `at` x lifetime with no jitter. */
  latestDueAt(state: Pick<TokenState, 'obtainedAt' | 'lifetimeMs'>): number {
    return this.#dueAt(state, 0);
  }

  /** T6: no two token requests closer than max(minInterval, 10% of the last lifetime). */
  earliestAllowed(): number {
    if (this.#lastRequestAt === undefined) return Number.NEGATIVE_INFINITY;
    const guard = Math.max(this.#o.policy.minIntervalMs, GUARD_LIFETIME_FRACTION * (this.#lastLifetimeMs ?? 0));
    return this.#lastRequestAt + guard;
  }

  /** T2: the renewal of `state`, at its due time (or when the guard allows). */
  scheduleRenewal(state: Pick<TokenState, 'obtainedAt' | 'lifetimeMs'>): void {
    this.schedule(this.dueAt(state), 'schedule');
  }

  /** Arms the next attempt at `desiredAt`, or when the guard lifts if that is later (counted as suppressed). */
  schedule(desiredAt: number, trigger: TokenTrigger): void {
    const earliest = this.earliestAllowed();
    if (desiredAt < earliest) this.#o.events.suppressed(trigger === 'retry' ? 'backoff' : 'min_interval');
    this.#arm(Math.max(desiredAt, earliest), trigger);
  }

  /** Arms a look at `at` without the guard: the guard is checked again when it fires (`deferUntilGuardLifts`). */
  lookAgainAt(at: number, trigger: TokenTrigger): void {
    this.#arm(at, trigger);
  }

  /**
   * T5 after a failure: counts it and arms a retry after the backoff, within `bounds`
   * (R2: Retry-After wins over both the backoff and `notAfter`).
   */
  retryAfterFailure(backoff: BackoffPolicy, bounds: RetryBounds = {}): void {
    this.#failures += 1;
    const now = this.#o.clock.now();
    const delay = backoffDelay(this.#failures - 1, backoff, this.#o.random);
    const notAfter = bounds.notAfter ?? Number.POSITIVE_INFINITY;
    const notBefore = bounds.notBefore ?? Number.NEGATIVE_INFINITY;
    this.schedule(Math.max(now, Math.min(now + delay, notAfter), notBefore), 'retry');
  }

  /**
   * T5, T6: whether an on-demand request (admin, upstream rejection) made at `now` must wait.
   * A pending retry holds it (an admin loop must not hammer a rejected login); the guard defers
   * it (and arms it for when the guard lifts, unless something comes sooner). Returns when the
   * next attempt comes, or undefined when it may start now.
   */
  holdOnDemand(trigger: TokenTrigger, now: number): number | undefined {
    if (this.#nextTrigger === 'retry' && this.#nextAt !== undefined && this.#nextAt > now) {
      this.#o.events.suppressed('backoff');
      return this.#nextAt;
    }
    const earliest = this.earliestAllowed();
    if (earliest <= now) return undefined;
    this.#o.events.suppressed('min_interval');
    if (this.#nextAt === undefined || earliest < this.#nextAt) this.#arm(earliest, trigger);
    return Math.min(earliest, this.#nextAt ?? earliest);
  }

  /** Defence in depth when a timer fires: if the guard still holds, re-arm for when it lifts (true). */
  deferUntilGuardLifts(trigger: TokenTrigger): boolean {
    if (this.earliestAllowed() <= this.#o.clock.now()) return false;
    this.#arm(this.earliestAllowed(), trigger);
    return true;
  }

  /** Disarms the pending attempt (a token request is starting, or the account stops). */
  clear(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#nextTrigger = undefined;
  }

  stop(): void {
    this.#stopped = true;
    this.clear();
  }

  #dueAt(state: Pick<TokenState, 'obtainedAt' | 'lifetimeMs'>, jitter: number): number {
    const fraction = this.#o.policy.at * (1 - jitter);
    return state.obtainedAt + fraction * state.lifetimeMs;
  }

  #arm(at: number, trigger: TokenTrigger): void {
    if (this.#stopped) return;
    this.clear();
    this.#nextAt = at;
    this.#nextTrigger = trigger;
    this.#timer = this.#o.clock.setTimer(() => this.#fire(), Math.max(0, at - this.#o.clock.now()));
  }

  #fire(): void {
    const trigger = this.#nextTrigger ?? 'schedule';
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#nextTrigger = undefined;
    this.#o.onDue(trigger);
  }
}
