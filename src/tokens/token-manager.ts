import type { RefreshPolicy } from '../config/resolve.js';
import type { TokenHttpOptions } from '../flows/http-client.js';
import type { TokenFlow, TokenRequestKind } from '../flows/types.js';
import type { StoredToken, TokenState, TokenStore } from '../stores/types.js';
import { readClock, type Clock, type ClockReading } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { Tracing } from '../util/tracing.js';
import type { Secret } from '../util/secret.js';
import type { SecretFile } from '../util/secret-file.js';
import { composeStatus } from './account-state.js';
import type { ActiveToken } from './active-token.js';
import {
  exchangeToken,
  type ExchangeFailed,
  type ExchangeRejected,
  type ExchangeSteps,
  type ExchangeSuccess,
} from './exchange.js';
import { CredentialWatch } from './credential-watch.js';
import { RejectionEscalation } from './escalation.js';
import { serveExchangeSteps } from './exchange-steps.js';
import { HeldRefreshToken } from './held-refresh-token.js';
import type { TokenRequestHistory } from './history.js';
import { Readiness } from './readiness.js';
import {
  REJECTED_BACKOFF,
  RenewalSchedule,
  TRANSIENT_BACKOFF,
  type BackoffPolicy,
  type RetryBounds,
} from './renewal-schedule.js';
import { TokenRequestReport } from './request-report.js';
import { SharedChain, type SharedChainOptions } from './shared-chain.js';
import {
  TokenUnavailableError,
  type RefreshRequestResult,
  type SendTokenRequest,
  type TokenEvents,
  type TokenStatus,
  type TokenTrigger,
} from './types.js';
import { readingAt } from './token-age.js';
import { HeldToken } from './held-token.js';
import { Waiters } from './waiters.js';

export interface TokenManagerOptions {
  account: string;
  flow: TokenFlow;
  policy: RefreshPolicy;
  store: TokenStore;
  clock: Clock;
  events: TokenEvents;
  logger: Logger;
  send: SendTokenRequest;
  /** TLS settings for the token endpoint (same CA as the upstream), and its egress proxy (E6). */
  tls?: Pick<TokenHttpOptions, 'ca' | 'rejectUnauthorized' | 'egress' | 'clientCertificate'>;
  random?: () => number;
  /** P2: the account's secret files, watched for new credentials. */
  secretFiles?: readonly SecretFile[];
  /** H3: the tracer once tracing has started; absent or undefined: token requests are not traced. */
  tracing?: () => Tracing | undefined;
  /** T3: where the spent refresh tokens are remembered (H2: a reload's new manager for the same credentials goes on with the old one's). */
  spentRefreshTokens?: HeldRefreshToken['spent'];
  /** H2: the fingerprint of the account's credentials, and what a record without one is taken for (SharedChain). */
  credentials?: SharedChainOptions['credentials'];
  unmarkedRecords?: SharedChainOptions['unmarkedRecords'];
}

/**
 * The lifecycle of one account's token: start from a stored token or a first request (T9),
 * serve it synchronously (the proxy reads `current()` on every request, T2), renew it on
 * schedule or on demand with one token request at a time (single flight), adopt what other
 * replicas obtain (T10), stop. The decisions are made by parts with one state each: when
 * (RenewalSchedule: T2, T5, T6), who waits (Waiters: T7), the chain replicas share
 * (SharedChain: T10), the refresh token and the spent ones (HeldRefreshToken: T3, T5), one
 * exchange with the token endpoint (exchangeToken: T1), readiness and the request report,
 * the escalation of upstream rejections (RejectionEscalation: P1), the credential files
 * (CredentialWatch: P2) and the state /status shows (composeStatus: P4).
 * R8: the token's age is read on both clocks (token-age.ts); every look (a request, /status, a
 * timer, a wall-clock jump noticed by the clock) starts a renewal that a jump made overdue.
 */
export class TokenManager {
  readonly account: string;
  /** The last hour or so of token requests (bounded), for the /status page. */
  readonly history: TokenRequestHistory;
  readonly #o: TokenManagerOptions;
  readonly #log: Logger;
  readonly #renewal: RenewalSchedule;
  readonly #waiters: Waiters;
  readonly #chain: SharedChain;
  readonly #refresh: HeldRefreshToken;
  readonly #readiness: Readiness;
  readonly #report: TokenRequestReport;
  readonly #escalation: RejectionEscalation;
  readonly #credentials: CredentialWatch;

  /** The token held, its generation, and when it began on both clocks (R8). */
  readonly #held = new HeldToken();
  #unwatchJumps: () => void = () => undefined;
  #inFlight: Promise<void> | undefined;
  /** The token generation an upstream has already rejected: one refresh per generation (T8). */
  #rejectedGeneration = 0;
  #stopped = false;

  constructor(options: TokenManagerOptions) {
    this.#o = options;
    this.account = options.account;
    this.#refresh = new HeldRefreshToken(options.spentRefreshTokens);
    this.#log = options.logger.child({ account: options.account });
    this.#readiness = new Readiness(this.#log);
    const spans = options.tracing && { account: options.account, tracing: options.tracing };
    this.#report = new TokenRequestReport(options.events, this.#log, spans);
    this.history = this.#report.history;
    const { clock, policy, events } = options;
    this.#escalation = new RejectionEscalation(policy.minIntervalMs, this.#log);
    this.#credentials = new CredentialWatch({
      files: options.secretFiles ?? [],
      clock,
      log: this.#log,
      account: {
        refused: () => this.#readiness.refused && !this.#stopped,
        request: (trigger) => this.requestRefresh(trigger),
        heldByBackoff: () => this.#renewal.nextTrigger === 'retry',
        cancelBackoff: () => this.#inFlight === undefined && this.#renewal.clear(),
      },
    });
    this.#renewal = new RenewalSchedule({
      clock,
      policy,
      events,
      random: options.random ?? Math.random,
      onDue: (trigger) => this.#onRenewalDue(trigger),
      rejectionGapMs: () => this.#escalation.gapMs(),
    });
    this.#waiters = new Waiters({ clock, unavailable: (now) => this.#unavailable(now) });
    // The account, its store, clock and events, and its credentials (H2), as the manager has them.
    this.#chain = new SharedChain({
      ...options,
      timeoutMs: policy.timeoutMs,
      log: this.#log,
      onOtherCredentials: () => this.#refresh.replacedInStore(),
    });
  }

  /** Adopts a still-valid stored token (T9) or asks for one at once (trigger `startup`). */
  async start(): Promise<void> {
    // Replicas hear of each other's saves and adopt the newest token (T10).
    this.#chain.watch(() => void this.#onStoreChange());
    // R8: a wall-clock jump may make the renewal overdue while its monotonic timer still waits.
    this.#unwatchJumps = this.#o.clock.watchJumps(() => {
      if (this.#inFlight === undefined) this.#renewal.clockJumped();
    });
    await this.#credentials.start();
    const stored = await this.#chain.load();
    if (stored !== undefined && this.#adoptStoredIfNewer(stored)) {
      const token = this.#held.token;
      this.#log.info(
        { fingerprint: token?.fingerprint, expiresAt: token && new Date(token.expiresAt).toISOString() },
        'using stored token',
      );
      // The schedule continues (§8): due at obtained + at x lifetime, at once if that is past.
      this.#renewal.scheduleRenewal(stored.state, this.#held.start);
      return;
    }
    this.#startTokenRequest('startup');
  }

  /** The valid token, or undefined. Synchronous: the proxy's hot path (T2); a look (R8). */
  current(): ActiveToken | undefined {
    return this.#held.validAt(this.#look());
  }

  /** T7: resolves with a valid token, waiting up to `waitForToken` for one to arrive. */
  waitForToken(): Promise<ActiveToken> {
    return this.#waitForGenerationAfter(0);
  }

  /**
   * T8: an upstream rejected `token`. The first report for a generation asks for one guarded
   * refresh; later reports for it, or for older generations, ask for nothing. Resolves with a
   * newer token, or rejects when none comes within `waitForToken`.
   */
  replacementFor(token: ActiveToken): Promise<ActiveToken> {
    const current = this.#held.token;
    if (current !== undefined && current.generation > token.generation)
      return this.#waitForGenerationAfter(token.generation);
    if (this.#rejectedGeneration !== token.generation) {
      this.#rejectedGeneration = token.generation;
      this.#escalation.rejected();
      this.requestRefresh('upstream_rejection');
    }
    return this.#waitForGenerationAfter(token.generation);
  }

  /** P1: an upstream answered a request sent with `token` outside `retryOn`; for the current token, the escalation resets. */
  tokenAccepted(token: ActiveToken): void {
    // A later rejection of this token is a first one again: held by minInterval only.
    if (token.generation === this.#held.generation && this.#escalation.accepted()) this.#rejectedGeneration = 0;
  }

  /** `POST /accounts/NAME/refresh`: a guarded request; P2 during a rejected-login backoff (CredentialWatch.adminRefresh). */
  adminRefresh(): Promise<RefreshRequestResult> {
    return this.#credentials.adminRefresh();
  }

  /** A token request for `admin`, `upstream_rejection` or `retry`, subject to the loop guard like any other (T6). */
  requestRefresh(trigger: 'admin' | 'upstream_rejection' | 'retry'): RefreshRequestResult {
    const now = this.#o.clock.now();
    if (this.#inFlight !== undefined) return { result: 'joined', at: now };
    const deferredTo = this.#renewal.holdOnDemand(trigger, now);
    if (deferredTo !== undefined) return { result: 'deferred', at: deferredTo };
    this.#startTokenRequest(trigger);
    return { result: 'started', at: now };
  }

  /** Resolves when no token request is in flight (tests and shutdown use it). */
  async settled(): Promise<void> {
    // A credential check (P2) may start a login: wait for both until neither runs.
    while ((await this.#credentials.idle()) || this.#inFlight !== undefined) await this.#inFlight;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#credentials.stop();
    this.#unwatchJumps();
    this.#chain.stop();
    this.#renewal.stop();
    this.#waiters.rejectAll();
    await this.settled();
  }

  /** The account as /status, /readyz and the metrics show it; a look (R8). Times are wall-clock times in today's frame. */
  status(): TokenStatus {
    const reading = this.#look();
    const held = this.#held;
    return composeStatus(
      { now: held.now(reading), wallNow: reading.wall, token: held.token, generation: held.generation },
      {
        readiness: this.#readiness,
        renewal: this.#renewal,
        chain: this.#chain,
        escalation: this.#escalation,
        activity: { stopped: this.#stopped, refreshing: this.#inFlight !== undefined },
        hasRefreshToken: this.#refresh.current !== undefined,
        waiting: this.#waiters.size,
        counts: this.#report.counts(),
        refreshOnlyShared: this.#o.store.shared && !this.#o.flow.canLogin,
      },
    );
  }

  /** R8: a look. A renewal or retry that a forward jump of the wall clock made overdue starts now. */
  #look(): ClockReading {
    const reading = readClock(this.#o.clock);
    if (this.#inFlight === undefined && this.#renewal.fireIfDue(reading)) return readClock(this.#o.clock);
    return reading;
  }

  #waitForGenerationAfter(generation: number): Promise<ActiveToken> {
    const [token, now, closed] = [this.current(), this.#o.clock.now(), this.#stopped];
    const nextAt = this.#inFlight === undefined ? this.#renewal.nextAt : undefined;
    return this.#waiters.waitAfter(generation, { token, now, waitMs: this.#o.policy.waitForTokenMs, closed, nextAt });
  }

  /** The renewal schedule's timer fired. */
  #onRenewalDue(trigger: TokenTrigger): void {
    if (this.#inFlight !== undefined) return;
    // Defence in depth: whatever armed this timer, the guard is checked again when it fires.
    if (this.#renewal.deferUntilGuardLifts(trigger)) return;
    this.#startTokenRequest(trigger);
  }

  /** T2: single flight. Starts a token request unless one is running (or the account stopped). */
  #startTokenRequest(trigger: TokenTrigger): void {
    if (this.#inFlight !== undefined || this.#stopped) return;
    if (trigger === 'upstream_rejection') this.#escalation.refreshStarted();
    this.#renewal.clear();
    this.#inFlight = this.#requestUnderLock(trigger)
      .catch((error: unknown) => {
        // A bug, not a token server fault: keep the process and the chain, try again later.
        this.#log.error({ err: error }, 'unexpected error in token request; retrying with backoff');
        this.#retryAfterFailure(TRANSIENT_BACKOFF);
      })
      .finally(() => (this.#inFlight = undefined));
  }

  /**
   * T10: one replica at a time. Under the account's lock, a token another replica just got is
   * adopted instead of asking for one. When the store cannot be reached, the valid token keeps
   * being served; only a token about to expire is renewed without the lock.
   */
  async #requestUnderLock(trigger: TokenTrigger): Promise<void> {
    const reading = readClock(this.#o.clock);
    // The expiry as a wall-clock time of this moment's frame (R8), as the chain compares it with now().
    const expiresAt = this.#held.token && this.#held.token.expiresAt + reading.wall - this.#held.now(reading);
    const attempt = await this.#chain.lockForRequest(expiresAt);
    if (attempt.type === 'held_elsewhere') {
      this.#renewal.lookAgainAt(attempt.lookAgainAt, trigger);
      return;
    }
    if (attempt.type === 'unreachable') {
      this.#retryAfterFailure(TRANSIENT_BACKOFF, { notAfter: attempt.retryNotAfter });
      return;
    }
    if (attempt.type === 'renew_unlocked') {
      await this.#requestToken(trigger, { unlocked: true });
      return;
    }
    const { lock, newer } = attempt;
    if (
      newer !== undefined &&
      this.#adoptStoredIfNewer(newer) &&
      this.#o.clock.now() < this.#renewal.latestDueAt(newer.state, this.#held.start)
    ) {
      await lock.release();
      this.#renewal.scheduleRenewal(newer.state, this.#held.start);
      return;
    }
    lock.keepAlive();
    try {
      await this.#requestToken(trigger);
    } finally {
      await lock.release();
    }
  }

  /** One exchange with the token endpoint, and what follows from its outcome. */
  async #requestToken(trigger: TokenTrigger, lock: { unlocked: boolean } = { unlocked: false }): Promise<void> {
    const { clock, policy } = this.#o;
    const result = await exchangeToken(this.#exchangeSteps(lock.unlocked), { clock, policy });
    if (result.outcome === 'unbuildable' || result.outcome === 'already_spent') {
      // Nothing was sent, nothing counted: an unreadable secret is a rejected login (§8).
      this.#onRejected({
        kind: result.outcome === 'unbuildable' ? 'login' : 'refresh',
        spent: undefined,
        reason: result.reason,
        at: result.at,
      });
      return;
    }
    let sentTrigger = trigger;
    if (result.nonceRetry !== undefined) {
      // E4: the attempt that brought the nonce counts on its own; the one sent with it is a `retry`.
      this.#report.requestSent({ ...result, ...result.nonceRetry, outcome: 'error' }, trigger);
      this.#o.events.dpopNonceRetry?.();
      sentTrigger = 'retry';
    }
    const logFields = this.#report.requestSent(result, sentTrigger);
    if (result.outcome === 'success') await this.#takeNewToken(result, logFields);
    else if (result.outcome === 'rejected') await this.#onRefused(result, logFields);
    else await this.#onFailed(result, logFields);
  }

  /** The exchange's steps (exchange-steps.ts). P2: a login reads the credential files first, so the watch knows what a rejection refers to. */
  #exchangeSteps(unlocked: boolean): ExchangeSteps {
    const beforeLogin = this.#credentials.watching ? () => this.#credentials.reread() : undefined;
    const parts = { refresh: this.#refresh, heldToken: this.#held.token?.secret, renewal: this.#renewal, beforeLogin };
    return serveExchangeSteps({ ...this.#o, ...parts }, unlocked);
  }

  /** T3: the new refresh token is stored before the new access token is used. */
  async #takeNewToken(result: ExchangeSuccess, logFields: Record<string, unknown>): Promise<void> {
    const { lifetime, state } = result;
    this.#report.lifetimeResolved(lifetime);
    // T3: a rotated refresh token replaces the spent one before anything else happens.
    if (result.spentRefreshToken !== undefined) this.#refresh.markSpent(result.spentRefreshToken);
    this.#refresh.replaceWith(state.refreshToken);
    const saved = await this.#chain.save(state);
    if (saved.type === 'superseded') {
      if (saved.newer !== undefined) {
        this.#adoptStored(saved.newer);
        this.#renewal.scheduleRenewal(saved.newer.state, this.#held.start);
      }
      return;
    }
    this.#adopt(state, result.sentReading, lifetime.source !== 'default');
    this.#renewal.resetBackoff();
    this.#refresh.answeredClearly();
    this.#readiness.tokenObtained();
    this.#log.info(
      {
        ...logFields,
        lifetimeS: lifetime.lifetimeMs / 1000,
        lifetimeSource: lifetime.source,
        fingerprint: this.#held.token?.fingerprint,
      },
      `token request: ${result.kind} succeeded`,
    );
    this.#waiters.resolveWith(this.#held.validAt(readClock(this.#o.clock)));
    this.#renewal.scheduleRenewal(state, result.sentReading);
  }

  /** The server said no. T10: a refresh it rejected may have been rotated by another replica first. */
  async #onRefused(result: ExchangeRejected, logFields: Record<string, unknown>): Promise<void> {
    this.#log.warn({ ...logFields, reason: result.reason }, `token request: ${result.kind} rejected`);
    if (
      result.kind === 'refresh' &&
      result.sentRefreshToken !== undefined &&
      (await this.#adoptNewerChain(result.sentRefreshToken))
    )
      return;
    if (result.spentRefreshToken !== undefined) await this.#chain.forgetSpent(result.spentRefreshToken);
    this.#onRejected({ kind: result.kind, spent: result.spentRefreshToken, reason: result.reason, at: result.sentAt });
  }

  /** T4, T5: a rejected refresh falls back to a login where possible; otherwise the account is unready and backs off. */
  #onRejected(rejected: { kind: TokenRequestKind; spent: Secret | undefined; reason: string; at: number }): void {
    const { kind, spent, reason, at } = rejected;
    this.#readiness.failed(at, `${kind} rejected: ${reason}`);
    if (spent !== undefined) {
      // A rejected refresh token is dead: never send it again (T3), fall back to a login (T4).
      this.#refresh.discard(spent);
      if (this.#o.flow.canLogin) {
        this.#renewal.schedule(at, 'retry');
        return;
      }
    }
    this.#readiness.credentialsRefused(kind, reason);
    this.#credentials.rejected();
    this.#retryAfterFailure(REJECTED_BACKOFF);
  }

  /**
   * T5: a transient failure, retried with backoff; the server's Retry-After (R2) is waited for.
   * An answer the server gave with tokens we cannot use spent the refresh token that was sent
   * (R1, T3): it is never sent again.
   */
  async #onFailed(result: ExchangeFailed, logFields: Record<string, unknown>): Promise<void> {
    const retryAfter = result.retryAfterMs === undefined ? {} : { retryAfterMs: result.retryAfterMs };
    this.#log.warn({ ...logFields, reason: result.reason, ...retryAfter }, `token request: ${result.kind} failed`);
    this.#readiness.failed(result.sentAt, `${result.kind} failed: ${result.reason}`);
    this.#readiness.noteExpiry(this.#held.token, this.#held.now(readClock(this.#o.clock)));
    if (result.spentRefreshToken !== undefined) {
      this.#refresh.discard(result.spentRefreshToken);
      await this.#chain.forgetSpent(result.spentRefreshToken);
    }
    // Reached the server but no clear answer: the refresh token may be spent (T5).
    else if (result.delivered && result.kind === 'refresh' && result.sentRefreshToken !== undefined)
      this.#refresh.unclearAnswer(result.sentRefreshToken);
    const notBefore = result.retryAfterMs === undefined ? undefined : this.#o.clock.now() + result.retryAfterMs;
    this.#retryAfterFailure(TRANSIENT_BACKOFF, { notBefore });
  }

  /** T5: backs off after a failure; waiters whose deadline comes before the next attempt are answered now (T7). */
  #retryAfterFailure(backoff: BackoffPolicy, bounds?: RetryBounds): void {
    this.#renewal.retryAfterFailure(backoff, bounds);
    this.#waiters.rejectDueBefore(this.#renewal.nextAt);
  }

  /** T10 after a rejected refresh: a different refresh token in the store means the chain went on elsewhere. */
  async #adoptNewerChain(rejected: Secret): Promise<boolean> {
    const stored = await this.#chain.loadOtherChain(rejected);
    if (stored === undefined) return false;
    this.#refresh.markSpent(rejected);
    this.#log.info('refresh rejected, but the store holds a newer chain from another replica: adopting it');
    this.#adoptStored(stored);
    if (this.#held.validAt(readClock(this.#o.clock)) === undefined)
      this.#renewal.schedule(this.#o.clock.now(), 'retry');
    else this.#renewal.scheduleRenewal(stored.state, this.#held.start);
    return true;
  }

  /** Another process saved this account's state: adopt it if it is newer than ours (T10). */
  async #onStoreChange(): Promise<void> {
    if (this.#stopped || this.#inFlight !== undefined) return;
    const stored = await this.#chain.loadNewer();
    if (stored !== undefined && this.#adoptStoredIfNewer(stored))
      this.#renewal.scheduleRenewal(stored.state, this.#held.start);
  }

  /** Takes a stored state, unless a token is held and the store has nothing newer. True when a token was adopted. */
  #adoptStoredIfNewer(stored: StoredToken): boolean {
    if (!this.#chain.isNewer(stored) && this.#held.token !== undefined) return false;
    return this.#adoptStored(stored);
  }

  /**
   * Takes a stored state as ours: its revision and refresh token always (the newest chain),
   * its access token when still valid and not the one held. True when a valid token is held from it.
   * R8: a stored token carries wall times only; it ages on both clocks from its adoption.
   */
  #adoptStored(stored: StoredToken): boolean {
    this.#chain.holdRevision(stored.revision);
    this.#refresh.adopt(stored.state.refreshToken);
    const now = readClock(this.#o.clock);
    if (stored.state.expiresAt <= now.wall) return false;
    if (this.#held.token !== undefined && this.#held.token.secret.equals(stored.state.accessToken)) return true;
    this.#adopt(stored.state, readingAt(stored.state.obtainedAt, now));
    this.#readiness.tokenAdopted();
    this.#waiters.resolveWith(this.#held.validAt(now));
    return true;
  }

  /** Holds `state`'s token from now on; `start` is when it began on both clocks (R8); `stated`: the server gave its lifetime (T6). */
  #adopt(state: TokenState, start: ClockReading, stated = false): void {
    this.#held.hold(state, start);
    this.#renewal.lifetimeSeen(state.lifetimeMs, stated);
  }

  #unavailable(now: number): TokenUnavailableError {
    const nextAt = this.#renewal.nextAt;
    const retryAfter = nextAt === undefined ? 1 : Math.max(1, Math.ceil((nextAt - now) / 1000));
    const reason =
      this.#readiness.notReadyReason(this.#held.token, this.#held.now(readClock(this.#o.clock))) ?? 'no valid token';
    return new TokenUnavailableError(`no valid token for account ${this.account}: ${reason}`, retryAfter);
  }
}
