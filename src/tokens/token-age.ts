import type { ClockReading } from '../util/clock.js';

/*
 * R8: time spans on two clocks. The monotonic clock never jumps but stops while the machine
 * is suspended; the wall clock keeps counting through a suspend but can be stepped either way.
 * So the time since an event is read on both, and the larger span wins: a forward jump of the
 * wall clock (waking up, an NTP step) makes things older at once, a backward one changes
 * nothing. Wall-clock times are otherwise for display, stored state and a server's `Date`.
 */

/** A moment `afterMs` after the reading `since`, on both clocks. */
export interface Deadline {
  since: ClockReading;
  afterMs: number;
}

/** How long ago `since` was, by whichever clock says more. */
export function elapsedSince(since: ClockReading, now: ClockReading): number {
  return Math.max(now.wall - since.wall, now.mono - since.mono);
}

/** How long until `deadline` (zero or less: it has come). */
export function remainingMs(deadline: Deadline, now: ClockReading): number {
  return deadline.afterMs - elapsedSince(deadline.since, now);
}

/** `deadline` as a wall-clock time in today's frame (after a jump too): for display and for callers that speak wall times. */
export function wallTimeOf(deadline: Deadline, now: ClockReading): number {
  return now.wall + remainingMs(deadline, now);
}

/** The deadline at wall-clock time `at` in today's frame, counted from `now`. */
export function deadlineAt(at: number, now: ClockReading): Deadline {
  return { since: now, afterMs: at - now.wall };
}

/**
 * The reading of both clocks at wall-clock time `at`, taken to be a moment ago with no jump in
 * between. For a token taken from a store (a restart, another replica), which carries wall
 * times only: its age at adoption is its wall-clock age (never negative), and from then on it
 * ages on both clocks like a token of our own.
 */
export function readingAt(at: number, now: ClockReading): ClockReading {
  return { wall: at, mono: now.mono - Math.max(0, now.wall - at) };
}

/**
 * "Now" on a token's own clock: the wall time it was obtained plus its age. Compared with the
 * token's stored wall times (`expiresAt`, the renewal point) it gives R8's answer: a token
 * obtained at `start` has expired when this reaches its `expiresAt`.
 */
export function tokenNow(start: ClockReading, now: ClockReading): number {
  return start.wall + elapsedSince(start, now);
}
