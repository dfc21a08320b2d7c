import type { RefreshPolicy } from '../config/resolve.js';
import type { TokenState } from '../stores/types.js';
import { readClock, type Clock, type ClockReading, type TimerHandle } from '../util/clock.js';
import { deadlineAt, readingAt, remainingMs, wallTimeOf, type Deadline } from './token-age.js';
import type { TokenEvents, TokenStatus, TokenTrigger } from './types.js';

/** T2: refreshes land a few percent before `at` x lifetime, so replicas and accounts spread out. */
const SCHEDULE_JITTER = 0.05;
/** T6: scheduled renewals keep this fraction of the last lifetime the server stated between them. */
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
  /** Called when the armed time comes (or a look finds it past, R8), with what armed it. */
  onDue(trigger: TokenTrigger): void;
  /** P1: how long an upstream-rejection refresh must wait after the last token request (ms); minInterval when absent. */
  rejectionGapMs?: () => number;
}

/** The token whose renewal is scheduled, by its stored wall times (when it began on both clocks is passed beside it, R8). */
export type RenewedToken = Pick<TokenState, 'obtainedAt' | 'lifetimeMs'>;

/**
 * When one account's next token request happens: the renewal at `at` x lifetime (T2), the loop
 * guard between two requests (T6), and the backoff after failures (T5, R2). One timer, one
 * pending attempt; the schedule waits for the guard, it never skips it.
 *
 * R8: every time here is a deadline on both clocks (`token-age.ts`): a span since a reading,
 * due when either clock says the span has passed. The timer runs on the monotonic clock, so a
 * wall clock set back moves nothing; a wall clock that jumps forward brings the pending attempt
 * nearer by the jump: the owner's next look (`fireIfDue`) starts it when that made it due, and
 * `clockJumped` re-arms its timer when not. Times given or returned as
 * numbers are wall-clock times in the frame of the moment of the call (for display and for
 * callers that speak wall times).
 */
export class RenewalSchedule {
  readonly #o: RenewalScheduleOptions;
  #timer: TimerHandle | undefined;
  #pending: { deadline: Deadline; trigger: TokenTrigger } | undefined;
  #lastRequest: ClockReading | undefined;
  /** The last lifetime the server stated (T6); undefined when it was guessed or unknown. */
  #statedLifetimeMs: number | undefined;
  #failures = 0;
  #stopped = false;

  constructor(options: RenewalScheduleOptions) {
    this.#o = options;
  }

  /** When the next attempt is armed for, if one is (a wall-clock time, right after a jump too). */
  get nextAt(): number | undefined {
    return this.#pending === undefined ? undefined : wallTimeOf(this.#pending.deadline, this.#now());
  }

  get nextTrigger(): TokenTrigger | undefined {
    return this.#pending?.trigger;
  }

  /** When the last token request went out, as a wall-clock time in today's frame. */
  get lastRequestAt(): number | undefined {
    return this.#lastRequest === undefined
      ? undefined
      : wallTimeOf({ since: this.#lastRequest, afterMs: 0 }, this.#now());
  }

  /** Failed attempts since the last token: the backoff exponent. */
  get failures(): number {
    return this.#failures;
  }

  /** The schedule's part of an account's status (TokenStatus): wall-clock times in today's frame. */
  statusFields(): Pick<TokenStatus, 'nextRequestAt' | 'nextTrigger' | 'lastRequestAt' | 'consecutiveFailures'> {
    return {
      nextRequestAt: this.nextAt,
      nextTrigger: this.nextTrigger,
      lastRequestAt: this.lastRequestAt,
      consecutiveFailures: this.failures,
    };
  }

  /** A token request went out at wall time `at` (read on both clocks: `reading`): the guard counts from then (T6). */
  requestSent(at: number, reading?: ClockReading): void {
    this.#lastRequest = reading ?? readingAt(at, this.#now());
  }

  /**
   * The lifetime of the token in use (T6): scheduled renewals keep a tenth of it between them,
   * but only when the server `stated` it; a guessed lifetime (`defaultLifetime`) never widens the guard.
   */
  lifetimeSeen(lifetimeMs: number, stated: boolean): void {
    this.#statedLifetimeMs = stated ? lifetimeMs : undefined;
  }

  /** A token was obtained: the next failure backs off from the start again. */
  resetBackoff(): void {
    this.#failures = 0;
  }

  /**
   * T2: `at` x lifetime after the token was obtained, minus a few percent of jitter. `start` is
   * when the token began on both clocks; without it, the token is taken as stored (R8).
   */
  dueAt(token: RenewedToken, start?: ClockReading): number {
    const now = this.#now();
    return wallTimeOf(this.#renewalOf(token, start, SCHEDULE_JITTER * this.#o.random(), now), now);
  }

  /** The latest the renewal of `token` can be due: `at` x lifetime with no jitter. */
  latestDueAt(token: RenewedToken, start?: ClockReading): number {
    const now = this.#now();
    return wallTimeOf(this.#renewalOf(token, start, 0, now), now);
  }

  /**
   * T6: when a request for `trigger` may start: `minInterval` after the last request; a scheduled
   * renewal also keeps 10% of the last stated lifetime; an upstream rejection waits as P1 says.
   */
  earliestAllowed(trigger: TokenTrigger = 'admin'): number {
    const guard = this.#guard(trigger);
    return guard === undefined ? Number.NEGATIVE_INFINITY : wallTimeOf(guard, this.#now());
  }

  /** T2: the renewal of `token`, at its due time (or when the guard allows). */
  scheduleRenewal(token: RenewedToken, start?: ClockReading): void {
    const now = this.#now();
    this.#schedule(this.#renewalOf(token, start, SCHEDULE_JITTER * this.#o.random(), now), 'schedule', now);
  }

  /** Arms the next attempt at `desiredAt`, or when the guard lifts if that is later (counted as suppressed). */
  schedule(desiredAt: number, trigger: TokenTrigger): void {
    const now = this.#now();
    this.#schedule(deadlineAt(desiredAt, now), trigger, now);
  }

  /** Arms a look at `at` without the guard: the guard is checked again when it fires (`deferUntilGuardLifts`). */
  lookAgainAt(at: number, trigger: TokenTrigger): void {
    this.#arm(deadlineAt(at, this.#now()), trigger);
  }

  /**
   * T5 after a failure: counts it and arms a retry after the backoff, within `bounds`
   * (R2: Retry-After wins over both the backoff and `notAfter`).
   */
  retryAfterFailure(backoff: BackoffPolicy, bounds: RetryBounds = {}): void {
    this.#failures += 1;
    const now = this.#now();
    const delay = backoffDelay(this.#failures - 1, backoff, this.#o.random);
    const notAfter = (bounds.notAfter ?? Number.POSITIVE_INFINITY) - now.wall;
    const notBefore = (bounds.notBefore ?? Number.NEGATIVE_INFINITY) - now.wall;
    this.#schedule({ since: now, afterMs: Math.max(0, Math.min(delay, notAfter), notBefore) }, 'retry', now);
  }

  /**
   * T5, T6: whether an on-demand request (admin, upstream rejection) made at `now` must wait.
   * A pending retry holds it (an admin loop must not hammer a rejected login); the guard defers
   * it (and arms it for when the guard lifts, unless something comes sooner). Returns when the
   * next attempt comes, or undefined when it may start now.
   */
  holdOnDemand(trigger: TokenTrigger, now: number): number | undefined {
    const nextAt = this.nextAt;
    if (this.#pending?.trigger === 'retry' && nextAt !== undefined && nextAt > now) {
      this.#o.events.suppressed('backoff');
      return nextAt;
    }
    const guard = this.#guard(trigger);
    const earliest = this.earliestAllowed(trigger);
    if (guard === undefined || earliest <= now) return undefined;
    this.#o.events.suppressed('min_interval');
    if (nextAt === undefined || earliest < nextAt) this.#arm(guard, trigger);
    return Math.min(earliest, nextAt ?? earliest);
  }

  /** Defence in depth when a timer fires: if the guard still holds, re-arm for when it lifts (true). */
  deferUntilGuardLifts(trigger: TokenTrigger): boolean {
    const guard = this.#guard(trigger);
    if (guard === undefined || remainingMs(guard, this.#now()) <= 0) return false;
    this.#arm(guard, trigger);
    return true;
  }

  /**
   * R8: a look. When the pending attempt is due by either clock (the wall clock jumped forward
   * past it while its monotonic timer still waits), it runs now. True when it did.
   */
  fireIfDue(now: ClockReading = this.#now()): boolean {
    if (this.#pending === undefined || remainingMs(this.#pending.deadline, now) > 0) return false;
    this.#fire();
    return true;
  }

  /**
   * R8: the wall clock jumped. The pending attempt runs now if that made it due; otherwise its
   * timer is re-armed for what is left by either clock (sooner after a forward jump, unchanged
   * after a backward one). True when it ran.
   */
  clockJumped(): boolean {
    if (this.fireIfDue()) return true;
    if (this.#pending !== undefined) this.#arm(this.#pending.deadline, this.#pending.trigger);
    return false;
  }

  /** Disarms the pending attempt (a token request is starting, or the account stops). */
  clear(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#pending = undefined;
  }

  stop(): void {
    this.#stopped = true;
    this.clear();
  }

  #now(): ClockReading {
    return readClock(this.#o.clock);
  }

  #renewalOf(token: RenewedToken, start: ClockReading | undefined, jitter: number, now: ClockReading): Deadline {
    const fraction = this.#o.policy.at * (1 - jitter);
    return { since: start ?? readingAt(token.obtainedAt, now), afterMs: fraction * token.lifetimeMs };
  }

  /**
   * T6: the guard's end for a request caused by `trigger`, once a first request went out:
   * `minInterval` for any; 10% of a stated lifetime too for a scheduled renewal; P1's escalation
   * for an upstream rejection.
   */
  #guard(trigger: TokenTrigger): Deadline | undefined {
    if (this.#lastRequest === undefined) return undefined;
    let guardMs = this.#o.policy.minIntervalMs;
    if (trigger === 'schedule') guardMs = Math.max(guardMs, GUARD_LIFETIME_FRACTION * (this.#statedLifetimeMs ?? 0));
    if (trigger === 'upstream_rejection') guardMs = Math.max(guardMs, this.#o.rejectionGapMs?.() ?? 0);
    return { since: this.#lastRequest, afterMs: guardMs };
  }

  #schedule(desired: Deadline, trigger: TokenTrigger, now: ClockReading): void {
    const guard = this.#guard(trigger);
    if (guard !== undefined && remainingMs(desired, now) < remainingMs(guard, now)) {
      this.#o.events.suppressed(trigger === 'retry' ? 'backoff' : 'min_interval');
      this.#arm(guard, trigger);
      return;
    }
    this.#arm(desired, trigger);
  }

  #arm(deadline: Deadline, trigger: TokenTrigger): void {
    if (this.#stopped) return;
    this.clear();
    this.#pending = { deadline, trigger };
    this.#timer = this.#o.clock.setTimer(() => this.#fire(), Math.max(0, remainingMs(deadline, this.#now())));
  }

  #fire(): void {
    const trigger = this.#pending?.trigger ?? 'schedule';
    this.clear();
    this.#o.onDue(trigger);
  }
}
