/** T5: transient failures back off from 1s, rejected logins from 1m; both cap at 5m. */
export const TRANSIENT_BACKOFF = { baseMs: 1_000, capMs: 300_000 } as const;
export const REJECTED_BACKOFF = { baseMs: 60_000, capMs: 300_000 } as const;

/**
 * Exponential backoff with full jitter (a random point in [0, base·2^n], capped).
 * `floorAtBase` keeps rejected logins at least a base apart: no faster than one a minute.
 */
export function backoffDelay(
  attempt: number,
  policy: { baseMs: number; capMs: number },
  random: () => number,
  floorAtBase = false,
): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  const delay = random() * ceiling;
  return floorAtBase ? Math.max(policy.baseMs, delay) : delay;
}
