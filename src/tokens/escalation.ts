import type { Logger } from '../util/logger.js';

/** P1: the escalated wait between rejection-triggered refreshes never exceeds this. */
const ESCALATION_CAP_MS = 300_000;
/** P1: the `degraded` reason while fresh tokens are rejected too (docs/contract.md P4). */
export const FRESH_TOKENS_REJECTED = 'upstream rejects fresh tokens';

/**
 * P1: upstream rejections that fresh tokens do not cure. The first rejection of a token asks for
 * a new one held only by `minInterval`; when a token obtained after a rejection is rejected too,
 * the token is not the problem, so the n-th refresh of the series waits `minInterval x 2^(n-1)`
 * after the previous token request (capped at 5 min). The series ends when a request sent with
 * the current token gets an answer outside `retryOn` (`accepted`, called from the data plane).
 */
export class RejectionEscalation {
  readonly #minIntervalMs: number;
  readonly #log: Logger;
  /** Rejection-triggered refreshes started since the series began. */
  #refreshes = 0;
  /** A token obtained after a rejection was rejected too: the account is degraded. */
  #freshRejected = false;

  constructor(minIntervalMs: number, log: Logger) {
    this.#minIntervalMs = minIntervalMs;
    this.#log = log;
  }

  /** True while fresh tokens are rejected too (P1, P4 `degraded`). */
  get degraded(): boolean {
    return this.#freshRejected;
  }

  /** How long (ms) the next rejection-triggered refresh waits after the previous token request. */
  gapMs(): number {
    return Math.min(ESCALATION_CAP_MS, this.#minIntervalMs * 2 ** Math.min(this.#refreshes, 30));
  }

  /** The upstream rejected the current token (first report of its generation). */
  rejected(): void {
    if (this.#refreshes === 0 || this.#freshRejected) return;
    this.#freshRejected = true;
    this.#log.warn(
      { nextWaitS: this.gapMs() / 1000 },
      `account degraded: ${FRESH_TOKENS_REJECTED}; refreshes for rejections back off (the token is not the problem)`,
    );
  }

  /** A rejection-triggered token request is starting. */
  refreshStarted(): void {
    this.#refreshes += 1;
  }

  /**
   * A request sent with the current token got an answer outside `retryOn`: the series ends.
   * True when one was running. Cheap: the hot path calls it.
   */
  accepted(): boolean {
    if (this.#refreshes === 0) return false;
    if (this.#freshRejected) this.#log.info('upstream accepts the token again; rejection backoff reset');
    this.#refreshes = 0;
    this.#freshRejected = false;
    return true;
  }
}
