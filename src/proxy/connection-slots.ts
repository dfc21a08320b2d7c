import type { Clock, TimerHandle } from '../util/clock.js';

/** Gives a slot back; calling it again does nothing. */
export type ReleaseSlot = () => void;

/** A request waiting for a slot; cancel() when its client leaves first. */
export interface SlotWait {
  cancel(): void;
}

interface Waiter {
  granted: (release: ReleaseSlot) => void;
  timer: TimerHandle;
}

/**
 * R10: an account's upstream connections, counted. At most `capacity` requests hold a slot (the
 * undici pool has as many connections, so it never queues a request itself); the others wait in
 * arrival order for up to `queueMs`, then are told to give up (503 `upstream_busy`).
 *
 * The data plane picks the token only once a slot is in hand, so a request that waited here never
 * leaves with a token that expired meanwhile (T7). Timers run on the injected clock.
 */
export class ConnectionSlots {
  readonly #capacity: number;
  readonly #queueMs: number;
  readonly #clock: Clock;
  #inUse = 0;
  readonly #waiting = new Set<Waiter>();
  #onIdle: Array<() => void> = [];

  constructor(options: { capacity: number; queueMs: number; clock: Clock }) {
    this.#capacity = options.capacity;
    this.#queueMs = options.queueMs;
    this.#clock = options.clock;
  }

  /** A slot now (hot path: no allocation but the release function), or undefined when all are taken or promised. */
  take(): ReleaseSlot | undefined {
    if (this.#inUse >= this.#capacity || this.#waiting.size > 0) return undefined;
    this.#inUse += 1;
    return this.#releaser();
  }

  /**
   * Waits for a slot: `granted` gets it (first come, first served), or `timedOut` is called once
   * `queueMs` has passed without one. Neither is called after cancel().
   */
  wait(granted: (release: ReleaseSlot) => void, timedOut: () => void): SlotWait {
    const waiter: Waiter = {
      granted,
      timer: this.#clock.setTimer(() => {
        if (this.#waiting.delete(waiter)) timedOut();
      }, this.#queueMs),
    };
    this.#waiting.add(waiter);
    return {
      cancel: () => {
        if (this.#waiting.delete(waiter)) this.#clock.clearTimer(waiter.timer);
      },
    };
  }

  /** H2: resolves once no slot is in use or promised (a replaced account's requests have all ended). */
  idle(): Promise<void> {
    if (this.#inUse === 0 && this.#waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onIdle.push(resolve));
  }

  #releaser(): ReleaseSlot {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#handOver();
    };
  }

  /** A slot came free: it passes straight to the longest waiter, else it is free again. */
  #handOver(): void {
    const next = this.#waiting.values().next();
    if (next.done === true) {
      this.#inUse -= 1;
      if (this.#inUse === 0) for (const wake of this.#onIdle.splice(0)) wake();
      return;
    }
    const waiter = next.value;
    this.#waiting.delete(waiter);
    this.#clock.clearTimer(waiter.timer);
    // Out of the caller's stack (often undici's end-of-answer callback): the pool has put the
    // connection back before the next request is dispatched on it.
    setImmediate(() => waiter.granted(this.#releaser()));
  }
}
