/**
 * Time as a dependency (STYLE.md): the token manager never calls Date.now() or setTimeout
 * directly, so tests can drive hours of refreshes in milliseconds.
 *
 * Two clocks (R8): the wall clock (`now`) can jump either way (an NTP step, a suspended laptop
 * waking up); the monotonic clock never jumps, but on Linux it stops while the machine is
 * suspended. Timers run on the monotonic clock, as Node's do.
 */
export interface Clock {
  /** Milliseconds since the epoch, on the local wall clock: for display, stored times and a server's `Date`. */
  now(): number;
  /** Milliseconds on the monotonic clock (any origin): never jumps; stops during a suspend. */
  monotonic(): number;
  /** Calls `callback` once `delayMs` have passed on the monotonic clock. */
  setTimer(callback: () => void, delayMs: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /**
   * Calls `onJump` soon after the wall clock jumps against the monotonic one (within
   * JUMP_POLL_MS of either clock moving on). Returns the function that stops watching.
   */
  watchJumps(onJump: () => void): () => void;
}

export interface TimerHandle {
  readonly id: number;
}

/** Both clocks read at one moment (R8). */
export interface ClockReading {
  /** The wall clock, ms since the epoch. */
  wall: number;
  /** The monotonic clock, ms. */
  mono: number;
}

/** Reads both clocks at once. */
export function readClock(clock: Pick<Clock, 'now' | 'monotonic'>): ClockReading {
  return { wall: clock.now(), mono: clock.monotonic() };
}

interface RealHandle extends TimerHandle {
  timeout: NodeJS.Timeout;
}

/** Node fires a timer longer than this (about 24.8 days) at once; longer waits are re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often the real clock compares its two clocks to notice a wall-clock jump (R8). */
export const JUMP_POLL_MS = 1_000;
/** A change of the wall-minus-monotonic offset smaller than this is drift, not a jump. */
const JUMP_TOLERANCE_MS = 100;

let nextRealTimerId = 1;

/** The wall clock's lead over the monotonic one; it changes only when the wall clock jumps (or drifts). */
const wallOffset = () => Date.now() - globalThis.performance.now();

/** One poll for the whole process, running only while someone watches, never keeping the process alive. */
class JumpPoll {
  readonly #watchers = new Set<() => void>();
  #interval: NodeJS.Timeout | undefined;
  #offset = 0;

  watch(onJump: () => void): () => void {
    this.#watchers.add(onJump);
    if (this.#interval === undefined) {
      this.#offset = wallOffset();
      this.#interval = setInterval(() => this.#check(), JUMP_POLL_MS);
      this.#interval.unref();
    }
    return () => {
      this.#watchers.delete(onJump);
      if (this.#watchers.size > 0 || this.#interval === undefined) return;
      clearInterval(this.#interval);
      this.#interval = undefined;
    };
  }

  #check(): void {
    const offset = wallOffset();
    if (Math.abs(offset - this.#offset) <= JUMP_TOLERANCE_MS) return;
    this.#offset = offset;
    for (const watcher of [...this.#watchers]) watcher();
  }
}

const jumpPoll = new JumpPoll();

/** The real clock. A timer longer than Node allows is re-armed in steps, so it never fires early. */
export const systemClock: Clock = {
  now: () => Date.now(),
  // Node's performance.now() is CLOCK_MONOTONIC on Linux: it does not count a suspend.
  monotonic: () => globalThis.performance.now(),
  setTimer(callback, delayMs) {
    const handle: RealHandle = { id: nextRealTimerId++, timeout: undefined as unknown as NodeJS.Timeout };
    const arm = (remainingMs: number) => {
      const step = Math.min(Math.max(0, remainingMs), MAX_TIMER_MS);
      handle.timeout = setTimeout(
        () => (remainingMs > MAX_TIMER_MS ? arm(remainingMs - MAX_TIMER_MS) : callback()),
        step,
      );
      handle.timeout.unref();
    };
    arm(delayMs);
    return handle;
  },
  clearTimer(handle) {
    clearTimeout((handle as RealHandle).timeout);
  },
  watchJumps: (onJump) => jumpPoll.watch(onJump),
};
