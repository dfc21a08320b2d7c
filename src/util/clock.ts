/**
 * Time as a dependency (STYLE.md): the token manager never calls Date.now() or setTimeout
 * directly, so tests can drive hours of refreshes in milliseconds.
 */
export interface Clock {
  /** Milliseconds since the epoch, on the local clock. */
  now(): number;
  setTimer(callback: () => void, delayMs: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

export interface TimerHandle {
  readonly id: number;
}

interface RealHandle extends TimerHandle {
  timeout: NodeJS.Timeout;
}

/** Node fires a timer longer than this (about 24.8 days) at once; longer waits are re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

let nextRealTimerId = 1;

/** The real clock. A timer longer than Node allows is re-armed in steps, so it never fires early. */
export const systemClock: Clock = {
  now: () => Date.now(),
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
};
