import type { TokenRequestKind } from '../flows/types.js';
import { formatDuration } from '../util/duration.js';
import type { Logger } from '../util/logger.js';
import type { Tracing } from '../util/tracing.js';
import { TokenRequestHistory } from './history.js';
import type { LifetimeAnomaly, ResolvedLifetime } from './lifetime.js';
import type { TokenEvents, TokenOutcome, TokenStatus, TokenTrigger } from './types.js';

/** One token request that was sent, as far as the report needs it. */
export interface SentRequest {
  kind: TokenRequestKind;
  outcome: TokenOutcome;
  sentAt: number;
  durationMs: number;
  /** The token endpoint's answer status; undefined when none came. */
  httpStatus?: number | undefined;
}

/** H3: the account's name and its tracer, once tracing has started (undefined: off). */
export interface TokenSpans {
  account: string;
  tracing: () => Tracing | undefined;
}

/**
 * What one account tells about its token requests: each request sent is counted once (§8: the
 * metric, the /status counts, the history); each lifetime anomaly is counted every time and
 * logged once per reason (§8); the token server's clock skew is measured (T1).
 */
export class TokenRequestReport {
  /** The last hour or so of token requests (bounded), for the /status page. */
  readonly history = new TokenRequestHistory();
  readonly #events: TokenEvents;
  readonly #log: Logger;
  readonly #spans: TokenSpans | undefined;
  readonly #loggedAnomalies = new Set<LifetimeAnomaly>();
  readonly #counts: TokenStatus['counts'] = {
    login: { success: 0, rejected: 0, error: 0 },
    refresh: { success: 0, rejected: 0, error: 0 },
  };

  constructor(events: TokenEvents, log: Logger, spans?: TokenSpans) {
    this.#events = events;
    this.#log = log;
    this.#spans = spans;
  }

  /** A copy of the counts per kind and outcome. */
  counts(): TokenStatus['counts'] {
    return structuredClone(this.#counts);
  }

  /** Counts one token request sent (and records its span, H3); returns the fields of the log line that tells how it went. */
  requestSent(request: SentRequest, trigger: TokenTrigger): Record<string, unknown> {
    const durationSeconds = request.durationMs / 1000;
    this.#events.tokenRequest(request.kind, request.outcome, trigger, durationSeconds);
    this.#counts[request.kind][request.outcome] += 1;
    this.history.record({ at: request.sentAt, kind: request.kind, outcome: request.outcome, trigger });
    if (this.#spans !== undefined) this.#recordSpan(this.#spans, request, trigger);
    return { kind: request.kind, trigger, outcome: request.outcome, durationMs: Math.round(durationSeconds * 1000) };
  }

  /** H3: a `token_request` span: kind, trigger, outcome and status; never a secret or the client id. */
  #recordSpan(spans: TokenSpans, request: SentRequest, trigger: TokenTrigger): void {
    const { kind, outcome, durationMs, httpStatus } = request;
    spans.tracing()?.tokenRequest({ account: spans.account, kind, trigger, outcome, httpStatus, durationMs });
  }

  /** T1, §8: a new token's lifetime: its anomalies and the server's clock skew. */
  lifetimeResolved(lifetime: ResolvedLifetime): void {
    for (const anomaly of lifetime.anomalies) this.#reportAnomaly(anomaly, lifetime.lifetimeMs);
    if (lifetime.skewMs !== undefined) this.#events.clockSkew(lifetime.skewMs / 1000);
  }

  #reportAnomaly(anomaly: LifetimeAnomaly, lifetimeMs: number): void {
    this.#events.lifetimeAnomaly(anomaly);
    if (this.#loggedAnomalies.has(anomaly)) return;
    this.#loggedAnomalies.add(anomaly);
    const hints: Record<LifetimeAnomaly, string> = {
      missing: 'the token response gave no lifetime; using the next source (expiration, JWT, refresh.defaultLifetime)',
      invalid: 'the token response gave a lifetime that is not a number; using the next source',
      nonpositive: 'the token response gave a zero or negative lifetime; using the next source',
      too_long: `the token lifetime is longer than refresh.maxLifetime; cut to ${formatDuration(lifetimeMs)}`,
      too_short: `the token lifetime (${formatDuration(lifetimeMs)}) is shorter than refresh.minInterval; tokens may expire before the next request is allowed: lower refresh.minInterval`,
    };
    this.#log.warn({ anomaly }, hints[anomaly]);
  }
}
