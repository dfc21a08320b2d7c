import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  REJECTED_BACKOFF,
  RenewalSchedule,
  TRANSIENT_BACKOFF,
} from '../../src/tokens/renewal-schedule.js';
import type { SuppressionReason, TokenTrigger } from '../../src/tokens/types.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;

function schedule(options: { minIntervalMs?: number; random?: () => number } = {}) {
  const clock = new FakeClock();
  const due: Array<{ trigger: TokenTrigger; at: number }> = [];
  const suppressed: SuppressionReason[] = [];
  const renewal = new RenewalSchedule({
    clock,
    policy: { at: 0.8, minIntervalMs: options.minIntervalMs ?? 5 * SECOND },
    events: { suppressed: (reason) => suppressed.push(reason) },
    random: options.random ?? (() => 0.5),
    onDue: (trigger) => due.push({ trigger, at: clock.now() }),
  });
  return { clock, renewal, due, suppressed };
}

describe('T2 renewal schedule and single flight', () => {
  it('T2: a renewal is due at `at` x lifetime minus a few percent of jitter, and fires then with trigger schedule', async () => {
    const { clock, renewal, due } = schedule({ random: () => 1 });
    const obtainedAt = clock.now();
    const state = { obtainedAt, lifetimeMs: 100 * SECOND };
    expect(renewal.latestDueAt(state)).toBe(obtainedAt + 80 * SECOND);
    expect(renewal.dueAt(state)).toBe(obtainedAt + 0.8 * 0.95 * 100 * SECOND);
    renewal.scheduleRenewal(state);
    expect(renewal.nextAt).toBe(obtainedAt + 76 * SECOND);
    expect(renewal.nextTrigger).toBe('schedule');
    await clock.advance(76 * SECOND - 1);
    expect(due).toEqual([]);
    await clock.advance(1);
    expect(due).toEqual([{ trigger: 'schedule', at: obtainedAt + 76 * SECOND }]);
    expect(renewal.nextAt).toBeUndefined();
  });

  it('T2: once stopped, the schedule arms nothing: no token request follows', async () => {
    const { clock, renewal, due } = schedule();
    renewal.scheduleRenewal({ obtainedAt: clock.now(), lifetimeMs: 10 * SECOND });
    renewal.stop();
    renewal.schedule(clock.now(), 'retry');
    expect(renewal.nextAt).toBeUndefined();
    expect(clock.pendingTimers()).toBe(0);
    await clock.advance(MINUTE);
    expect(due).toEqual([]);
  });
});

describe('T6 loop guard', () => {
  it('T6: the guard is minInterval after the last request for any trigger, and 10% of a stated lifetime for a scheduled renewal; none before a first request', () => {
    const { clock, renewal } = schedule();
    expect(renewal.earliestAllowed()).toBe(Number.NEGATIVE_INFINITY);
    renewal.requestSent(clock.now());
    expect(renewal.earliestAllowed()).toBe(clock.now() + 5 * SECOND);
    renewal.lifetimeSeen(3600 * SECOND, true);
    expect(renewal.earliestAllowed('schedule')).toBe(clock.now() + 6 * MINUTE);
    for (const trigger of ['admin', 'upstream_rejection', 'retry'] as const)
      expect(renewal.earliestAllowed(trigger)).toBe(clock.now() + 5 * SECOND);
    // A guessed lifetime (defaultLifetime) never widens the guard.
    renewal.lifetimeSeen(3600 * SECOND, false);
    expect(renewal.earliestAllowed('schedule')).toBe(clock.now() + 5 * SECOND);
  });

  it('T6: the schedule waits for the guard, never skips it, and counts the wait (min_interval, or backoff for a retry)', async () => {
    const { clock, renewal, due, suppressed } = schedule();
    const start = clock.now();
    renewal.requestSent(start);
    renewal.schedule(start + SECOND, 'schedule');
    expect(renewal.nextAt).toBe(start + 5 * SECOND);
    renewal.schedule(start + SECOND, 'retry');
    expect(suppressed).toEqual(['min_interval', 'backoff']);
    await clock.advance(5 * SECOND);
    expect(due).toEqual([{ trigger: 'retry', at: start + 5 * SECOND }]);
  });

  it('T6: when a timer armed without the guard fires early, it is re-armed for when the guard lifts', async () => {
    const { clock, renewal, due } = schedule();
    const start = clock.now();
    renewal.requestSent(start);
    renewal.lookAgainAt(start + SECOND, 'admin');
    await clock.advance(SECOND);
    expect(due).toEqual([{ trigger: 'admin', at: start + SECOND }]);
    expect(renewal.deferUntilGuardLifts('admin')).toBe(true);
    expect(renewal.nextAt).toBe(start + 5 * SECOND);
    await clock.advance(4 * SECOND);
    expect(renewal.deferUntilGuardLifts('admin')).toBe(false);
  });
});

describe('T5 transient failures back off', () => {
  it('T5: failures back off exponentially with full jitter from 1 s, capped at 5 min; rejected logins never sooner than 1 min', () => {
    expect([0, 1, 2, 3].map((attempt) => backoffDelay(attempt, TRANSIENT_BACKOFF, () => 1))).toEqual([
      SECOND,
      2 * SECOND,
      4 * SECOND,
      8 * SECOND,
    ]);
    expect(backoffDelay(20, TRANSIENT_BACKOFF, () => 1)).toBe(5 * MINUTE);
    expect(backoffDelay(3, TRANSIENT_BACKOFF, () => 0)).toBe(0);
    expect(backoffDelay(0, REJECTED_BACKOFF, () => 0)).toBe(MINUTE);
    expect(backoffDelay(10, REJECTED_BACKOFF, () => 1)).toBe(5 * MINUTE);
  });

  it('T5: each failure is counted and arms a retry after a longer backoff; a token resets the count', () => {
    const { clock, renewal } = schedule({ minIntervalMs: 0, random: () => 1 });
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      renewal.retryAfterFailure(TRANSIENT_BACKOFF);
      waits.push((renewal.nextAt ?? 0) - clock.now());
    }
    expect(waits).toEqual([SECOND, 2 * SECOND, 4 * SECOND, 8 * SECOND]);
    expect(renewal.failures).toBe(4);
    expect(renewal.nextTrigger).toBe('retry');
    renewal.resetBackoff();
    expect(renewal.failures).toBe(0);
  });

  it('T5/T6: an on-demand request is held by a pending retry, deferred by the guard (armed once), and free after it', () => {
    const { clock, renewal, suppressed } = schedule({ random: () => 1 });
    const now = clock.now();
    expect(renewal.holdOnDemand('admin', now)).toBeUndefined();
    renewal.requestSent(now);
    expect(renewal.holdOnDemand('admin', now)).toBe(now + 5 * SECOND);
    expect(renewal.nextTrigger).toBe('admin');
    expect(renewal.holdOnDemand('upstream_rejection', now)).toBe(now + 5 * SECOND);
    expect(renewal.nextTrigger).toBe('admin');
    renewal.retryAfterFailure(REJECTED_BACKOFF);
    expect(renewal.holdOnDemand('admin', now + 6 * SECOND)).toBe(now + MINUTE);
    expect(suppressed).toEqual(['min_interval', 'min_interval', 'backoff']);
  });
});

describe('R2 token responses', () => {
  it('R2: a Retry-After (notBefore) wins over the backoff and over notAfter; notAfter caps the backoff', () => {
    const { clock, renewal } = schedule({ minIntervalMs: 0, random: () => 1 });
    const now = clock.now();
    renewal.retryAfterFailure(REJECTED_BACKOFF, { notAfter: now + 10 * SECOND });
    expect(renewal.nextAt).toBe(now + 10 * SECOND);
    renewal.retryAfterFailure(TRANSIENT_BACKOFF, { notBefore: now + 20 * SECOND, notAfter: now + 10 * SECOND });
    expect(renewal.nextAt).toBe(now + 20 * SECOND);
  });
});
