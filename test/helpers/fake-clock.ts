import { JUMP_POLL_MS, type Clock, type TimerHandle } from '../../src/util/clock.js';

interface FakeTimer {
  id: number;
  /** When it fires, on the monotonic clock. */
  at: number;
  callback: () => void;
}

/** The monotonic clock starts far from the wall clock, so code that mixes the two shows up in tests. */
const MONOTONIC_START = 5_000_000;

/**
 * A clock that only moves when a test says so. It has a wall clock and a monotonic clock
 * (R8): `advance` moves both and fires due timers (which run on the monotonic clock, as
 * Node's do) in time order and, after each, waits for the work it started (real token
 * requests on real sockets) to settle, so an hour of refreshes runs in milliseconds and in a
 * deterministic order. `suspend` and `stepWall` move the wall clock alone, as a suspended
 * laptop or an NTP step does; the jump watchers hear of it at the next poll, JUMP_POLL_MS
 * later on the monotonic clock, as with the real clock.
 */
export class FakeClock implements Clock {
  #wall: number;
  #monotonic = MONOTONIC_START;
  #nextId = 1;
  readonly #timers = new Map<number, FakeTimer>();
  readonly #jumpWatchers = new Set<() => void>();
  #pollPending = false;

  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.#wall = start;
  }

  now(): number {
    return this.#wall;
  }

  monotonic(): number {
    return this.#monotonic;
  }

  setTimer(callback: () => void, delayMs: number): TimerHandle {
    const timer = { id: this.#nextId++, at: this.#monotonic + Math.max(0, delayMs), callback };
    this.#timers.set(timer.id, timer);
    return { id: timer.id };
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle.id);
  }

  watchJumps(onJump: () => void): () => void {
    this.#jumpWatchers.add(onJump);
    return () => this.#jumpWatchers.delete(onJump);
  }

  /** Watchers of wall-clock jumps (token managers that are running). */
  jumpWatchers(): number {
    return this.#jumpWatchers.size;
  }

  pendingTimers(): number {
    return this.#timers.size;
  }

  /** When the next timer fires, as a wall-clock time (as long as the wall clock does not jump). */
  nextTimerAt(): number | undefined {
    let next: number | undefined;
    for (const timer of this.#timers.values()) if (next === undefined || timer.at < next) next = timer.at;
    return next === undefined ? undefined : next + (this.#wall - this.#monotonic);
  }

  /**
   * The machine sleeps for `ms` and wakes: the wall clock jumps forward, the monotonic clock
   * does not move (Linux's stops during suspend) and no timer fires.
   */
  suspend(ms: number): void {
    this.stepWall(ms);
  }

  /** The wall clock is set forward (`ms` > 0) or back (`ms` < 0) at once, as an NTP step does. */
  stepWall(ms: number): void {
    this.#wall += ms;
    if (this.#pollPending || this.#jumpWatchers.size === 0) return;
    this.#pollPending = true;
    this.setTimer(() => {
      this.#pollPending = false;
      for (const watcher of [...this.#jumpWatchers]) watcher();
    }, JUMP_POLL_MS);
  }

  /** Moves time forward by `ms` on both clocks, firing every timer due on the way. */
  async advance(ms: number, settle: () => Promise<void> = flushIo): Promise<void> {
    const target = this.#monotonic + ms;
    for (;;) {
      // Work already under way (a token request on a real socket) may arm the next timer.
      await settle();
      const due = this.#earliestDue(target);
      if (due === undefined) break;
      this.#timers.delete(due.id);
      this.#moveTo(Math.max(this.#monotonic, due.at));
      due.callback();
      await settle();
    }
    this.#moveTo(target);
  }

  #moveTo(monotonic: number): void {
    this.#wall += monotonic - this.#monotonic;
    this.#monotonic = monotonic;
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
