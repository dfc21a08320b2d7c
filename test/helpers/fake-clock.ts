import type { Clock, TimerHandle } from '../../src/util/clock.js';

interface FakeTimer {
  id: number;
  at: number;
  callback: () => void;
}

/**
 * A clock that only moves when a test says so. `advance` fires due timers in time order and,
 * after each, waits for the work it started (real token requests on real sockets) to settle,
 * so an hour of refreshes runs in milliseconds and in a deterministic order.
 */
export class FakeClock implements Clock {
  #now: number;
  #nextId = 1;
  readonly #timers = new Map<number, FakeTimer>();

  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(callback: () => void, delayMs: number): TimerHandle {
    const timer = { id: this.#nextId++, at: this.#now + Math.max(0, delayMs), callback };
    this.#timers.set(timer.id, timer);
    return { id: timer.id };
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle.id);
  }

  pendingTimers(): number {
    return this.#timers.size;
  }

  nextTimerAt(): number | undefined {
    let next: number | undefined;
    for (const timer of this.#timers.values()) if (next === undefined || timer.at < next) next = timer.at;
    return next;
  }

  /** Moves time forward by `ms`, firing every timer due on the way. */
  async advance(ms: number, settle: () => Promise<void> = flushIo): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      // Work already under way (a token request on a real socket) may arm the next timer.
      await settle();
      const due = this.#earliestDue(target);
      if (due === undefined) break;
      this.#timers.delete(due.id);
      this.#now = Math.max(this.#now, due.at);
      due.callback();
      await settle();
    }
    this.#now = target;
  }

  #earliestDue(limit: number): FakeTimer | undefined {
    let earliest: FakeTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (
        timer.at <= limit &&
        (earliest === undefined || timer.at < earliest.at || (timer.at === earliest.at && timer.id < earliest.id))
      )
        earliest = timer;
    }
    return earliest;
  }
}

/** Lets pending promise callbacks and already-arrived I/O run. */
export async function flushIo(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
