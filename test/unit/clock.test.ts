import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_TIMER_MS, systemClock } from '../../src/util/clock.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('the system clock', () => {
  it('a timer longer than Node allows (about 24.8 days) fires when due, not at once or early', () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const start = Date.now();
    systemClock.setTimer(() => fired.push(Date.now() - start), 2 * MAX_TIMER_MS + 1000);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(fired).toEqual([2 * MAX_TIMER_MS + 1000]);
  });

  it('clearing a re-armed timer stops it', () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const handle = systemClock.setTimer(() => fired.push(1), MAX_TIMER_MS + 10);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    systemClock.clearTimer(handle);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([]);
  });
});
