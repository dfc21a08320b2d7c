import type { TokenHttpResponse } from './types.js';

/** R2: however long a server asks us to wait, the next attempt comes within 5 minutes. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** Statuses whose Retry-After is honoured (R2): "too many requests" and "unavailable". */
const RETRY_AFTER_STATUSES = new Set([429, 503]);

/**
 * R2: how long a token endpoint asked us to wait, in ms (0 to 5 min), or undefined when the
 * answer is not a 429/503 or carries no usable `Retry-After` (RFC 9110 §10.2.3: delay-seconds
 * or an HTTP-date). An HTTP-date is measured against the response's own `Date` header when it
 * has one (the server's clock against the server's clock, as T1 does), else against `now`.
 *
 * @param response the token endpoint's answer
 * @param now the local wall-clock time in ms since the epoch (injected: tests use a fake clock)
 */
export function retryAfterMs(response: Pick<TokenHttpResponse, 'status' | 'headers'>, now: number): number | undefined {
  if (!RETRY_AFTER_STATUSES.has(response.status)) return undefined;
  const value = response.headers['retry-after'];
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  let delayMs: number;
  if (/^\d+$/.test(text)) {
    delayMs = Number(text) * 1000;
  } else {
    // An HTTP-date has a weekday and a month name; anything else ("-5", "soon") is ignored.
    const at = /[a-z]{3}/i.test(text) ? Date.parse(text) : Number.NaN;
    if (Number.isNaN(at)) return undefined;
    const serverNow = typeof response.headers.date === 'string' ? Date.parse(response.headers.date) : Number.NaN;
    delayMs = at - (Number.isNaN(serverNow) ? now : serverNow);
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, delayMs));
}
