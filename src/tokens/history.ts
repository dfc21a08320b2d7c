import type { TokenRequestKind } from '../flows/types.js';
import type { TokenOutcome, TokenTrigger } from './types.js';

/** One token request as /status shows it: when, what, how it went, what caused it. */
export interface TokenRequestEvent {
  at: number;
  kind: TokenRequestKind;
  outcome: TokenOutcome;
  trigger: TokenTrigger;
}

/** Token requests of one (kind, outcome, trigger) in a window. */
export interface TokenRequestCount {
  kind: TokenRequestKind;
  outcome: TokenOutcome;
  trigger: TokenTrigger;
  count: number;
}

const KINDS: readonly TokenRequestKind[] = ['login', 'refresh'];
const OUTCOMES: readonly TokenOutcome[] = ['success', 'rejected', 'error'];
const TRIGGERS: readonly TokenTrigger[] = ['startup', 'schedule', 'upstream_rejection', 'admin', 'retry'];

/**
 * The loop guard's floor is 1 s (T6), so one process sends at most 3600 token requests an hour
 * per account: this ring holds a full hour even of a loop, in about 36 KiB.
 */
export const HISTORY_CAPACITY = 4096;

/**
 * A bounded ring of one account's token requests, for the /status page (counts for the last
 * hour, requests per minute). Typed arrays: no object per event, fixed memory whatever happens.
 */
export class TokenRequestHistory {
  readonly #times: Float64Array;
  readonly #codes: Uint8Array;
  #next = 0;
  #size = 0;

  constructor(capacity = HISTORY_CAPACITY) {
    this.#times = new Float64Array(capacity);
    this.#codes = new Uint8Array(capacity);
  }

  record(event: TokenRequestEvent): void {
    this.#times[this.#next] = event.at;
    this.#codes[this.#next] = encode(event);
    this.#next = (this.#next + 1) % this.#times.length;
    this.#size = Math.min(this.#size + 1, this.#times.length);
  }

  /** Events at or after `since`, oldest first. */
  since(since: number): TokenRequestEvent[] {
    const events: TokenRequestEvent[] = [];
    const capacity = this.#times.length;
    for (let i = 0; i < this.#size; i++) {
      const index = (this.#next - this.#size + i + capacity) % capacity;
      const at = this.#times[index] ?? 0;
      if (at >= since) events.push({ at, ...decode(this.#codes[index] ?? 0) });
    }
    return events;
  }

  /** Counts by kind, outcome and trigger since `since`, largest first; combinations that did not occur are left out. */
  countsSince(since: number): TokenRequestCount[] {
    const counts = new Map<number, TokenRequestCount>();
    for (const event of this.since(since)) {
      const code = encode(event);
      const entry = counts.get(code) ?? { kind: event.kind, outcome: event.outcome, trigger: event.trigger, count: 0 };
      entry.count += 1;
      counts.set(code, entry);
    }
    return [...counts.values()].sort((a, b) => b.count - a.count || encode(a) - encode(b));
  }

  /** Token requests per minute for the last `minutes` minutes ending at `now`, oldest first. */
  perMinute(now: number, minutes = 60): number[] {
    const buckets = new Array<number>(minutes).fill(0);
    const start = now - minutes * 60_000;
    for (const event of this.since(start)) {
      const index = Math.min(minutes - 1, Math.floor((event.at - start) / 60_000));
      buckets[index] = (buckets[index] ?? 0) + 1;
    }
    return buckets;
  }
}

function encode(event: Pick<TokenRequestEvent, 'kind' | 'outcome' | 'trigger'>): number {
  return (
    (KINDS.indexOf(event.kind) * OUTCOMES.length + OUTCOMES.indexOf(event.outcome)) * TRIGGERS.length +
    TRIGGERS.indexOf(event.trigger)
  );
}

function decode(code: number): Pick<TokenRequestEvent, 'kind' | 'outcome' | 'trigger'> {
  const trigger = TRIGGERS[code % TRIGGERS.length] ?? 'schedule';
  const rest = Math.floor(code / TRIGGERS.length);
  return {
    kind: KINDS[Math.floor(rest / OUTCOMES.length)] ?? 'login',
    outcome: OUTCOMES[rest % OUTCOMES.length] ?? 'error',
    trigger,
  };
}
