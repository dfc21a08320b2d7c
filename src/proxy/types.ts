/** What the data plane reports; admin/metrics.ts implements it with Prometheus series. */

/**
 * T8 replay outcomes: `success` (the replay got a non-retryOn answer), `rejected_again` (it did not),
 * `no_token` (no new token in time: the first answer went through), `skipped` (body too large or incomplete).
 */
export type ReplayOutcome = 'success' | 'rejected_again' | 'no_token' | 'skipped';

/** Per-account metric handles for the proxy's hot path: no label objects built per request. */
export interface ProxyMetrics {
  observe(code: number, durationSeconds: number): void;
  upstreamRejection(code: number): void;
  replay(outcome: ReplayOutcome): void;
  /** E7: the upstream asked for a DPoP nonce and the request was sent again with it. */
  dpopNonceRetry(): void;
}
