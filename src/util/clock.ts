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

let nextRealTimerId = 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(callback, delayMs) {
    // Node caps timers at 2^31-1 ms; longer waits are simply re-armed by callers' schedules.
    const timeout = setTimeout(callback, Math.min(Math.max(0, delayMs), 2 ** 31 - 1));
    timeout.unref();
    const handle: RealHandle = { id: nextRealTimerId++, timeout };
    return handle;
  },
  clearTimer(handle) {
    clearTimeout((handle as RealHandle).timeout);
  },
};
