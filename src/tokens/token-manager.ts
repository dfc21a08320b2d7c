import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { RefreshPolicy } from '../config/resolve.js';
import { TokenTransportError, type TokenHttpOptions } from '../flows/http-client.js';
import { retryAfterMs } from '../flows/retry-after.js';
import { CredentialUnavailableError, type ParsedTokenResponse, type TokenFlow, type TokenHttpRequest, type TokenHttpResponse, type TokenRequestKind } from '../flows/types.js';
import type { StoredToken, StoreLock, TokenState, TokenStore } from '../stores/types.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { formatDuration } from '../util/duration.js';
import type { Logger } from '../util/logger.js';
import { scrubServerText } from '../util/scrub.js';
import type { Secret } from '../util/secret.js';
import { ActiveToken } from './active-token.js';
import { backoffDelay, REJECTED_BACKOFF, TRANSIENT_BACKOFF } from './backoff.js';
import { TokenRequestHistory } from './history.js';
import { resolveLifetime, type LifetimeAnomaly } from './lifetime.js';

/** What caused a token request (metric label `trigger`, docs/contract.md §7). */
export type TokenTrigger = 'startup' | 'schedule' | 'upstream_rejection' | 'admin' | 'retry';
export type TokenOutcome = 'success' | 'rejected' | 'error';
export type SuppressionReason = 'min_interval' | 'backoff';

/** How the manager reports what it does; admin/metrics.ts turns these into Prometheus series. */
export interface TokenEvents {
  tokenRequest(kind: TokenRequestKind, outcome: TokenOutcome, trigger: TokenTrigger, durationSeconds: number): void;
  suppressed(reason: SuppressionReason): void;
  lifetimeAnomaly(reason: LifetimeAnomaly): void;
  clockSkew(seconds: number): void;
  /** A store operation failed (Redis down): the account keeps serving its valid token. */
  storeError(operation: StoreOperation): void;
}

export type StoreOperation = 'load' | 'save' | 'lock';

export type SendTokenRequest = (request: TokenHttpRequest, options: TokenHttpOptions) => Promise<TokenHttpResponse>;

export interface TokenManagerOptions {
  account: string;
  flow: TokenFlow;
  policy: RefreshPolicy;
  store: TokenStore;
  clock: Clock;
  events: TokenEvents;
  logger: Logger;
  send: SendTokenRequest;
  /** TLS settings for the token endpoint (same CA as the upstream). */
  tls?: Pick<TokenHttpOptions, 'ca' | 'rejectUnauthorized'>;
  random?: () => number;
}

/** Thrown to requests that cannot get a token in time (T7): the proxy answers 503 with Retry-After. */
export class TokenUnavailableError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
    this.name = 'TokenUnavailableError';
  }
}

export interface RefreshRequestResult {
  /** `started` ran a request now; `joined` shares one in flight; `deferred` waits for the guard or backoff. */
  result: 'started' | 'joined' | 'deferred';
  at: number;
}

export type AccountState = 'starting' | 'valid' | 'refreshing' | 'expired' | 'rejected' | 'stopped';

export interface TokenStatus {
  state: AccountState;
  ready: boolean;
  reason: string | undefined;
  fingerprint: string | undefined;
  generation: number;
  obtainedAt: number | undefined;
  expiresAt: number | undefined;
  lifetimeMs: number | undefined;
  nextRequestAt: number | undefined;
  nextTrigger: TokenTrigger | undefined;
  lastRequestAt: number | undefined;
  lastError: { at: number; message: string } | undefined;
  consecutiveFailures: number;
  hasRefreshToken: boolean;
  /** Requests parked until a token arrives (T7). */
  waiting: number;
  /** Why the token store cannot be used right now (shared stores), if so. */
  storeProblem: string | undefined;
  /** Revision of the stored state this process holds. */
  revision: number | undefined;
  counts: Record<TokenRequestKind, Record<TokenOutcome, number>>;
}

/** T2: refreshes land a few percent before `at` x lifetime, so replicas and accounts spread out. */
const SCHEDULE_JITTER = 0.05;
/** T6: the guard is max(minInterval, this fraction of the last lifetime). */
const GUARD_LIFETIME_FRACTION = 0.1;
/** Transport failures where the request certainly never reached the server (nothing was consumed). */
const NOT_DELIVERED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  // TLS failed before any request byte was sent.
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);
/** The lock outlives the token request's own timeout by this much, and is extended while it runs (T10). */
const LOCK_MARGIN_MS = 5_000;
/** While another replica holds the lock, look again this often (its result normally arrives by notification first). */
const FOLLOW_INTERVAL_MS = 1_000;
/** How many spent refresh tokens are remembered to refuse sending one again (T3). */
const SPENT_MEMORY = 64;

interface Waiter {
  /** Only a token of a later generation than this will do (a replay after a rejection, T8). */
  afterGeneration: number;
  resolve(token: ActiveToken): void;
  reject(error: TokenUnavailableError): void;
  deadline: number;
  timer: TimerHandle;
}

interface PlannedRequest {
  kind: TokenRequestKind;
  request: TokenHttpRequest;
  /** The refresh token this request spends, if any. */
  spends: Secret | undefined;
}

/**
 * Keeps one account's token fresh. One token request at a time (single flight), never two
 * closer than the loop guard (T6), the newest refresh token always kept (T3), failures backed
 * off (T5). The proxy reads `current()` synchronously on every request.
 */
export class TokenManager {
  readonly account: string;
  /** The last hour or so of token requests (bounded), for the /status page. */
  readonly history = new TokenRequestHistory();
  readonly #o: TokenManagerOptions;
  readonly #random: () => number;
  readonly #log: Logger;

  #token: ActiveToken | undefined;
  #refreshToken: Secret | undefined;
  #generation = 0;
  #lastRequestAt: number | undefined;
  #lastLifetimeMs: number | undefined;
  #inFlight: Promise<void> | undefined;
  #timer: TimerHandle | undefined;
  #nextAt: number | undefined;
  #nextTrigger: TokenTrigger | undefined;
  #failures = 0;
  /** Failed attempts (no clear answer) with the current refresh token: it may have been consumed. */
  #refreshTokenFailures = 0;
  /** Why the server refuses this account's credentials; set until a token is obtained again. */
  #rejection: string | undefined;
  /** The token generation an upstream has already rejected: one refresh per generation (T8). */
  #rejectedGeneration = 0;
  #lastError: { at: number; message: string } | undefined;
  /** Set once the "token expired, no new one" state change is logged; cleared by the next token. */
  #expiryLogged = false;
  #stopped = false;
  /** Revision of the stored state this process holds (compare-and-set, T10). */
  #revision: number | undefined;
  #storeProblem: string | undefined;
  #unsubscribe: () => void = () => undefined;
  readonly #spentRefreshTokens = new Set<string>();
  readonly #waiters = new Set<Waiter>();
  readonly #loggedAnomalies = new Set<LifetimeAnomaly>();
  readonly #counts: TokenStatus['counts'] = {
    login: { success: 0, rejected: 0, error: 0 },
    refresh: { success: 0, rejected: 0, error: 0 },
  };

  constructor(options: TokenManagerOptions) {
    this.#o = options;
    this.account = options.account;
    this.#random = options.random ?? Math.random;
    this.#log = options.logger.child({ account: options.account });
  }

  /** Adopts a still-valid stored token (T9) or asks for one at once (trigger `startup`). */
  async start(): Promise<void> {
    // Replicas hear of each other's saves and adopt the newest token (T10).
    if (this.#o.store.shared) this.#unsubscribe = this.#o.store.subscribe(this.account, () => void this.#onStoreChange());
    const stored = await this.#loadStored();
    if (stored !== undefined && this.#takeStored(stored)) {
      const token = this.#token;
      this.#log.info({ fingerprint: token?.fingerprint, expiresAt: token && new Date(token.expiresAt).toISOString() }, 'using stored token');
      // The schedule continues (§8): due at obtained + at x lifetime, at once if that is past.
      this.#scheduleGuarded(this.#refreshDueAt(stored.state), 'schedule');
      return;
    }
    this.#run('startup');
  }

  /** The valid token, or undefined. Synchronous: the proxy's hot path (T2). */
  current(): ActiveToken | undefined {
    const token = this.#token;
    return token !== undefined && this.#o.clock.now() < token.expiresAt ? token : undefined;
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
    const current = this.#token;
    if (current !== undefined && current.generation > token.generation) return this.#waitForGenerationAfter(token.generation);
    if (this.#rejectedGeneration !== token.generation) {
      this.#rejectedGeneration = token.generation;
      this.requestRefresh('upstream_rejection');
    }
    return this.#waitForGenerationAfter(token.generation);
  }

  #waitForGenerationAfter(generation: number): Promise<ActiveToken> {
    const token = this.current();
    if (token !== undefined && token.generation > generation) return Promise.resolve(token);
    const now = this.#o.clock.now();
    const wait = this.#o.policy.waitForTokenMs;
    if (this.#stopped) return Promise.reject(this.#unavailable(now));
    // Nothing can arrive in time (next attempt is later than the wait): answer at once.
    if (this.#inFlight === undefined && this.#nextAt !== undefined && this.#nextAt - now > wait) {
      return Promise.reject(this.#unavailable(now));
    }
    return new Promise<ActiveToken>((resolve, reject) => {
      const waiter: Waiter = {
        afterGeneration: generation,
        resolve,
        reject,
        deadline: now + wait,
        timer: this.#o.clock.setTimer(() => {
          this.#waiters.delete(waiter);
          reject(this.#unavailable(this.#o.clock.now()));
        }, wait),
      };
      this.#waiters.add(waiter);
    });
  }

  /** A token request for `admin` or `upstream_rejection`, subject to the loop guard like any other (T6). */
  requestRefresh(trigger: 'admin' | 'upstream_rejection'): RefreshRequestResult {
    const now = this.#o.clock.now();
    if (this.#inFlight !== undefined) return { result: 'joined', at: now };
    // A pending retry holds every trigger: an admin loop must not hammer a login that is being rejected.
    if (this.#nextTrigger === 'retry' && this.#nextAt !== undefined && this.#nextAt > now) {
      this.#o.events.suppressed('backoff');
      return { result: 'deferred', at: this.#nextAt };
    }
    const earliest = this.#earliestAllowed();
    if (earliest > now) {
      this.#o.events.suppressed('min_interval');
      if (this.#nextAt === undefined || earliest < this.#nextAt) this.#schedule(earliest, trigger);
      return { result: 'deferred', at: Math.min(earliest, this.#nextAt ?? earliest) };
    }
    this.#run(trigger);
    return { result: 'started', at: now };
  }

  /** Resolves when no token request is in flight (tests and shutdown use it). */
  async settled(): Promise<void> {
    while (this.#inFlight !== undefined) await this.#inFlight;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe();
    this.#clearTimer();
    for (const waiter of this.#waiters) this.#rejectWaiter(waiter, this.#unavailable(this.#o.clock.now()));
    await this.settled();
  }

  status(): TokenStatus {
    const now = this.#o.clock.now();
    const token = this.#token;
    const valid = token !== undefined && now < token.expiresAt;
    return {
      state: this.#state(now),
      ready: valid && this.#rejection === undefined,
      reason: this.#notReadyReason(now),
      fingerprint: token?.fingerprint,
      generation: this.#generation,
      obtainedAt: token?.obtainedAt,
      expiresAt: token?.expiresAt,
      lifetimeMs: token?.lifetimeMs,
      nextRequestAt: this.#nextAt,
      nextTrigger: this.#nextTrigger,
      lastRequestAt: this.#lastRequestAt,
      lastError: this.#lastError,
      consecutiveFailures: this.#failures,
      hasRefreshToken: this.#refreshToken !== undefined,
      waiting: this.#waiters.size,
      storeProblem: this.#storeProblem,
      revision: this.#revision,
      counts: structuredClone(this.#counts),
    };
  }

  #state(now: number): AccountState {
    if (this.#stopped) return 'stopped';
    if (this.#inFlight !== undefined) return 'refreshing';
    if (this.#token !== undefined && now < this.#token.expiresAt) return this.#rejection === undefined ? 'valid' : 'rejected';
    if (this.#rejection !== undefined) return 'rejected';
    return this.#token === undefined ? 'starting' : 'expired';
  }

  #notReadyReason(now: number): string | undefined {
    if (this.#rejection !== undefined) return this.#rejection;
    if (this.#token !== undefined && now < this.#token.expiresAt) return undefined;
    const last = this.#lastError === undefined ? '' : `; last error: ${this.#lastError.message}`;
    if (this.#token === undefined) return `no token yet${last}`;
    return `token expired at ${new Date(this.#token.expiresAt).toISOString()}${last}`;
  }

  #run(trigger: TokenTrigger): void {
    if (this.#inFlight !== undefined || this.#stopped) return;
    this.#clearTimer();
    this.#inFlight = this.#perform(trigger)
      .catch((error: unknown) => {
        // A bug, not a token server fault: keep the process and the chain, try again later.
        this.#log.error({ err: error }, 'unexpected error in token request; retrying with backoff');
        this.#failures += 1;
        this.#scheduleRetry(TRANSIENT_BACKOFF, false);
      })
      .finally(() => {
        this.#inFlight = undefined;
      });
  }

  async #perform(trigger: TokenTrigger): Promise<void> {
    const coordination = await this.#coordinate(trigger);
    if (coordination === 'done') return;
    const extender = this.#keepLockAlive(coordination.lock);
    try {
      await this.#request(trigger);
    } finally {
      extender.stop();
      await coordination.lock?.release().catch((error: unknown) => this.#onStoreError('lock', error));
    }
  }

  /**
   * T10: one replica at a time. Takes the account's lock, then re-reads the store: a token
   * another replica just got is adopted instead of asking for one. When the store cannot be
   * reached, the valid token keeps being served; only a token about to expire is renewed
   * without the lock (logged).
   */
  async #coordinate(trigger: TokenTrigger): Promise<'done' | { lock: StoreLock | undefined }> {
    const ttl = this.#o.policy.timeoutMs + LOCK_MARGIN_MS;
    let lock: StoreLock | undefined;
    try {
      lock = await this.#o.store.obtainLock(this.account, ttl);
      this.#storeRecovered();
    } catch (error) {
      this.#onStoreError('lock', error);
      if (this.#mustRenewAnyway()) {
        this.#log.warn({ store: this.#o.store.type }, 'renewing the token without the store lock: the store is unreachable and the token would expire');
        return { lock: undefined };
      }
      this.#failures += 1;
      this.#scheduleRetry(TRANSIENT_BACKOFF, false, this.#renewAnywayAt());
      return 'done';
    }
    if (lock === undefined) {
      // Another replica is asking; its token arrives by notification, or the lock expires.
      this.#schedule(this.#o.clock.now() + FOLLOW_INTERVAL_MS, trigger);
      return 'done';
    }
    const stored = await this.#loadStored();
    if (stored !== undefined && stored.revision > (this.#revision ?? 0) && this.#takeStored(stored) && this.#o.clock.now() < this.#refreshDueAt(stored.state, 0)) {
      await lock.release().catch((error: unknown) => this.#onStoreError('lock', error));
      this.#scheduleGuarded(this.#refreshDueAt(stored.state), 'schedule');
      return 'done';
    }
    return { lock };
  }

  /** A token about to expire (or gone) is renewed even when the lock cannot be known. */
  #mustRenewAnyway(): boolean {
    return this.#o.clock.now() >= this.#renewAnywayAt();
  }

  /** From when on the token is renewed without the lock: two request timeouts before it expires. */
  #renewAnywayAt(): number {
    const token = this.#token;
    return token === undefined ? Number.NEGATIVE_INFINITY : token.expiresAt - 2 * this.#o.policy.timeoutMs;
  }

  /** Extends the lock while the token request runs, so a slow answer does not let another replica in. */
  #keepLockAlive(lock: StoreLock | undefined): { stop(): void } {
    if (lock === undefined) return { stop: () => undefined };
    const ttl = this.#o.policy.timeoutMs + LOCK_MARGIN_MS;
    let timer: TimerHandle | undefined;
    const arm = () => {
      timer = this.#o.clock.setTimer(() => {
        void lock.extend(ttl).then(
          (kept) => (kept ? arm() : this.#log.warn('lost the store lock during a token request')),
          (error: unknown) => this.#onStoreError('lock', error),
        );
      }, ttl / 3);
    };
    arm();
    return { stop: () => timer !== undefined && this.#o.clock.clearTimer(timer) };
  }

  async #request(trigger: TokenTrigger): Promise<void> {
    const sentAt = this.#o.clock.now();
    let plan: PlannedRequest;
    try {
      plan = await this.#plan();
    } catch (error) {
      // An unreadable secret file is a rejected login (§8): nothing was sent, nothing counted.
      const message = error instanceof CredentialUnavailableError ? error.message : `cannot read a secret: ${(error as Error).message}`;
      this.#onRejected('login', undefined, message, sentAt);
      return;
    }
    if (plan.spends !== undefined && this.#isSpent(plan.spends)) {
      this.#onRejected('refresh', undefined, 'the configured refresh token was already used; put a new one in refreshTokenFile', sentAt);
      return;
    }

    this.#lastRequestAt = sentAt;
    const started = performance.now();
    let parsed: ParsedTokenResponse;
    let delivered = true;
    let quietMs: number | undefined;
    // R4: whatever the server says back is scrubbed of what we sent it and what we hold.
    const secrets = [...plan.request.secrets, this.#token?.secret, this.#refreshToken];
    try {
      const response = await this.#o.send(plan.request, { timeoutMs: this.#o.policy.timeoutMs, ...this.#o.tls });
      parsed = this.#o.flow.parseResponse(response, secrets);
      quietMs = parsed.outcome === 'error' ? retryAfterMs(response, this.#o.clock.now()) : undefined;
    } catch (error) {
      const message = error instanceof TokenTransportError ? error.message : `request failed: ${scrubServerText((error as Error).message, secrets)}`;
      delivered = !(error instanceof TokenTransportError && NOT_DELIVERED.has(error.code));
      parsed = { outcome: 'error', reason: message };
    }
    const durationSeconds = (performance.now() - started) / 1000;
    this.#o.events.tokenRequest(plan.kind, parsed.outcome, trigger, durationSeconds);
    this.#counts[plan.kind][parsed.outcome] += 1;
    this.history.record({ at: sentAt, kind: plan.kind, outcome: parsed.outcome, trigger });
    const logFields = { kind: plan.kind, trigger, outcome: parsed.outcome, durationMs: Math.round(durationSeconds * 1000) };

    if (parsed.outcome === 'success') {
      await this.#onSuccess(plan, parsed.token, sentAt, logFields);
    } else if (parsed.outcome === 'rejected') {
      this.#log.warn({ ...logFields, reason: parsed.reason }, `token request: ${plan.kind} rejected`);
      // T10: another replica may have rotated the chain; its newer refresh token is in the store.
      if (plan.kind === 'refresh' && plan.spends !== undefined && (await this.#adoptNewerChain(plan.spends))) return;
      this.#onRejected(plan.kind, plan.spends, parsed.reason, sentAt);
    } else {
      this.#log.warn({ ...logFields, reason: parsed.reason, ...(quietMs === undefined ? {} : { retryAfterMs: quietMs }) }, `token request: ${plan.kind} failed`);
      this.#onError(plan, parsed, sentAt, { delivered, quietMs });
    }
  }

  /** After a rejected refresh: a different refresh token in the store means the chain went on elsewhere. */
  async #adoptNewerChain(rejected: Secret): Promise<boolean> {
    const stored = await this.#loadStored();
    const storedRefresh = stored?.state.refreshToken;
    if (stored === undefined || storedRefresh === undefined || storedRefresh.equals(rejected)) return false;
    this.#markSpent(rejected);
    this.#log.info('refresh rejected, but the store holds a newer chain from another replica: adopting it');
    this.#takeStored(stored, true);
    this.#scheduleGuarded(this.current() === undefined ? this.#o.clock.now() : this.#refreshDueAt(stored.state), this.current() === undefined ? 'retry' : 'schedule');
    return true;
  }

  /** Another process saved this account's state: adopt it if it is newer than ours (T10). */
  async #onStoreChange(): Promise<void> {
    if (this.#stopped || this.#inFlight !== undefined) return;
    const stored = await this.#loadStored();
    if (stored === undefined || stored.revision <= (this.#revision ?? 0)) return;
    if (this.#takeStored(stored)) this.#scheduleGuarded(this.#refreshDueAt(stored.state), 'schedule');
  }

  /**
   * Takes a stored state as ours: its revision and refresh token always (the newest chain),
   * its access token when still valid and newer than the one held. True when a token was adopted.
   */
  #takeStored(stored: StoredToken, force = false): boolean {
    if (!force && stored.revision <= (this.#revision ?? 0) && this.#token !== undefined) return false;
    this.#revision = stored.revision;
    this.#refreshToken = stored.state.refreshToken;
    this.#refreshTokenFailures = 0;
    const now = this.#o.clock.now();
    if (stored.state.expiresAt <= now) return false;
    if (this.#token !== undefined && this.#token.secret.equals(stored.state.accessToken)) return true;
    this.#adopt(stored.state);
    this.#rejection = undefined;
    this.#resolveWaiters();
    return true;
  }

  /** Refresh with the newest refresh token, unless it looks consumed and a login is possible. */
  async #plan(): Promise<PlannedRequest> {
    const refreshToken = this.#refreshToken;
    // T5: a refresh with no clear answer may have spent the token; try it once more, then log in.
    const suspect = this.#refreshTokenFailures >= 2 && this.#o.flow.canLogin;
    if (refreshToken !== undefined && !suspect && this.#o.flow.canRefresh) {
      return { kind: 'refresh', request: await this.#o.flow.buildRefreshRequest(refreshToken), spends: refreshToken };
    }
    const initial = await this.#o.flow.buildInitialRequest();
    return { kind: initial.kind, request: initial.request, spends: initial.sentRefreshToken };
  }

  async #onSuccess(plan: PlannedRequest, issued: { accessToken: Secret; refreshToken: Secret | undefined; lifetime: Parameters<typeof resolveLifetime>[0] }, sentAt: number, logFields: Record<string, unknown>): Promise<void> {
    const lifetime = resolveLifetime(issued.lifetime, issued.accessToken, sentAt, {
      defaultLifetimeMs: this.#o.policy.defaultLifetimeMs,
      maxLifetimeMs: this.#o.policy.maxLifetimeMs,
      minIntervalMs: this.#o.policy.minIntervalMs,
    });
    for (const anomaly of lifetime.anomalies) this.#reportAnomaly(anomaly, lifetime.lifetimeMs);
    if (lifetime.skewMs !== undefined) this.#o.events.clockSkew(lifetime.skewMs / 1000);

    // T3: a rotated refresh token replaces the spent one before anything else happens.
    if (issued.refreshToken !== undefined && plan.spends !== undefined && !issued.refreshToken.equals(plan.spends)) this.#markSpent(plan.spends);
    // A dialect that rotates on every refresh (session) has spent the old token even if no new one came.
    const keepsOld = plan.kind === 'refresh' && !this.#o.flow.rotatesRefreshTokens;
    const refreshToken = issued.refreshToken ?? (keepsOld ? plan.spends : undefined);
    if (issued.refreshToken === undefined && plan.spends !== undefined && !keepsOld) this.#markSpent(plan.spends);
    this.#refreshToken = refreshToken;
    const state: TokenState = {
      accessToken: issued.accessToken,
      obtainedAt: sentAt,
      expiresAt: sentAt + lifetime.lifetimeMs,
      lifetimeMs: lifetime.lifetimeMs,
      refreshToken,
    };
    const saved = await this.#saveState(state);
    if (saved === 'superseded') return;

    this.#adopt(state);
    this.#failures = 0;
    this.#refreshTokenFailures = 0;
    if (this.#rejection !== undefined) this.#log.info('credentials accepted again; account is ready');
    else if (this.#expiryLogged) this.#log.info('token obtained; account is ready again');
    this.#expiryLogged = false;
    this.#rejection = undefined;
    this.#lastError = undefined;
    this.#log.info(
      { ...logFields, lifetimeS: lifetime.lifetimeMs / 1000, lifetimeSource: lifetime.source, fingerprint: this.#token?.fingerprint },
      `token request: ${plan.kind} succeeded`,
    );
    this.#resolveWaiters();
    this.#scheduleGuarded(this.#refreshDueAt(state), 'schedule');
  }

  #onRejected(kind: TokenRequestKind, spent: Secret | undefined, reason: string, at: number): void {
    this.#lastError = { at, message: `${kind} rejected: ${reason}` };
    if (spent !== undefined) {
      // A rejected refresh token is dead: never send it again (T3), fall back to a login (T4).
      this.#markSpent(spent);
      if (this.#refreshToken !== undefined && spent.equals(this.#refreshToken)) this.#refreshToken = undefined;
      this.#refreshTokenFailures = 0;
      if (this.#o.flow.canLogin) {
        this.#scheduleGuarded(at, 'retry');
        return;
      }
    }
    const rejection = kind === 'login' ? `login rejected: ${reason}` : `refresh token rejected and no credentials to log in with: ${reason}`;
    if (rejection !== this.#rejection) this.#log.error({ reason }, `account unready: ${rejection}; retrying no more than once a minute`);
    this.#rejection = rejection;
    this.#failures += 1;
    this.#scheduleRetry(REJECTED_BACKOFF, true);
  }

  /**
   * T5: a transient failure. `quietMs` is the server's Retry-After (R2): the next attempt waits
   * at least that long. An answer the server gave with tokens we cannot use spent the refresh
   * token that was sent (R1, T3): it is never sent again.
   */
  #onError(plan: PlannedRequest, parsed: { reason: string; consumed?: boolean }, at: number, how: { delivered: boolean; quietMs: number | undefined }): void {
    this.#lastError = { at, message: `${plan.kind} failed: ${parsed.reason}` };
    this.#failures += 1;
    this.#logExpiry();
    const spent = plan.spends;
    if (parsed.consumed === true && spent !== undefined) {
      this.#markSpent(spent);
      if (spent.equals(this.#refreshToken)) this.#refreshToken = undefined;
      this.#refreshTokenFailures = 0;
    } else if (how.delivered && plan.kind === 'refresh' && spent !== undefined && spent.equals(this.#refreshToken)) {
      // Reached the server but no clear answer: the refresh token may be spent (T5).
      this.#refreshTokenFailures += 1;
    }
    const notBefore = how.quietMs === undefined ? undefined : this.#o.clock.now() + how.quietMs;
    this.#scheduleRetry(TRANSIENT_BACKOFF, false, Number.POSITIVE_INFINITY, notBefore);
  }

  /** State change: the token ran out before a new one could be had (T7). Logged once per token. */
  #logExpiry(): void {
    const token = this.#token;
    if (token === undefined || this.#expiryLogged || this.#o.clock.now() < token.expiresAt) return;
    this.#expiryLogged = true;
    this.#log.error(
      { fingerprint: token.fingerprint, expiredAt: new Date(token.expiresAt).toISOString(), lastError: this.#lastError?.message },
      'account unready: the token expired and no new one could be had yet; requests get 503 token_unavailable',
    );
  }

  /**
   * Backoff after a failure; `notAfter` caps it (a store outage must not outlast the token);
   * `notBefore` is a server's Retry-After (R2), which wins over both.
   */
  #scheduleRetry(policy: { baseMs: number; capMs: number }, floorAtBase: boolean, notAfter = Number.POSITIVE_INFINITY, notBefore = Number.NEGATIVE_INFINITY): void {
    const now = this.#o.clock.now();
    const delay = backoffDelay(this.#failures - 1, policy, this.#random, floorAtBase);
    this.#scheduleGuarded(Math.max(now, Math.min(now + delay, notAfter), notBefore), 'retry');
    // Waiters whose deadline comes before the next attempt cannot be helped: answer them now.
    for (const waiter of this.#waiters) {
      if (this.#nextAt !== undefined && this.#nextAt > waiter.deadline) this.#rejectWaiter(waiter, this.#unavailable(this.#o.clock.now()));
    }
  }

  /** T2: `at` x lifetime after the token was obtained, minus a few percent of jitter. */
  #refreshDueAt(state: Pick<TokenState, 'obtainedAt' | 'lifetimeMs'>, jitter = SCHEDULE_JITTER * this.#random()): number {
    const fraction = this.#o.policy.at * (1 - jitter);
    return state.obtainedAt + fraction * state.lifetimeMs;
  }

  /** T6: no two token requests closer than max(minInterval, 10% of the last lifetime). */
  #earliestAllowed(): number {
    if (this.#lastRequestAt === undefined) return Number.NEGATIVE_INFINITY;
    const guard = Math.max(this.#o.policy.minIntervalMs, GUARD_LIFETIME_FRACTION * (this.#lastLifetimeMs ?? 0));
    return this.#lastRequestAt + guard;
  }

  /** The schedule waits for the guard; it never skips it. */
  #scheduleGuarded(desiredAt: number, trigger: TokenTrigger): void {
    const earliest = this.#earliestAllowed();
    if (desiredAt < earliest) this.#o.events.suppressed(trigger === 'retry' ? 'backoff' : 'min_interval');
    this.#schedule(Math.max(desiredAt, earliest), trigger);
  }

  #schedule(at: number, trigger: TokenTrigger): void {
    if (this.#stopped) return;
    this.#clearTimer();
    this.#nextAt = at;
    this.#nextTrigger = trigger;
    this.#timer = this.#o.clock.setTimer(() => this.#onTimer(), Math.max(0, at - this.#o.clock.now()));
  }

  #onTimer(): void {
    const trigger = this.#nextTrigger ?? 'schedule';
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#nextTrigger = undefined;
    if (this.#inFlight !== undefined) return;
    // Defence in depth: whatever armed this timer, the guard is checked again when it fires.
    if (this.#earliestAllowed() > this.#o.clock.now()) {
      this.#schedule(this.#earliestAllowed(), trigger);
      return;
    }
    this.#run(trigger);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#nextTrigger = undefined;
  }

  #adopt(state: TokenState): void {
    this.#generation += 1;
    this.#token = new ActiveToken(state.accessToken, this.#generation, state.obtainedAt, state.expiresAt, state.lifetimeMs);
    this.#lastLifetimeMs = state.lifetimeMs;
  }

  async #loadStored(): Promise<StoredToken | undefined> {
    try {
      const stored = await this.#o.store.load(this.account);
      this.#storeRecovered();
      return stored;
    } catch (error) {
      this.#onStoreError('load', error);
      return undefined;
    }
  }

  /**
   * Saves with compare-and-set against the revision we hold. 'superseded' when another replica
   * saved meanwhile (our lock expired): its state is adopted instead. A store that cannot be
   * reached keeps nothing from us: the newest refresh token stays in memory (never lost).
   */
  async #saveState(state: TokenState): Promise<'saved' | 'superseded' | 'unsaved'> {
    try {
      let result = await this.#o.store.save(this.account, state, this.#revision ?? null);
      // The store lost its data (a Redis restart): write ours afresh, with a revision above the one
      // we held, so replicas still holding that one see ours as newer and adopt it instead of
      // spending their (already spent) refresh token.
      if (!result.saved && result.current === undefined) result = await this.#o.store.save(this.account, state, null, this.#revision);
      this.#storeRecovered();
      if (result.saved) {
        this.#revision = result.record.revision;
        return 'saved';
      }
      if (result.current !== undefined) {
        this.#log.warn({ revision: result.current.revision }, 'another replica saved a newer state during this token request: adopting it');
        this.#takeStored(result.current, true);
        this.#scheduleGuarded(this.#refreshDueAt(result.current.state), 'schedule');
      }
      return 'superseded';
    } catch (error) {
      this.#onStoreError('save', error);
      return 'unsaved';
    }
  }

  #onStoreError(operation: StoreOperation, error: unknown): void {
    this.#o.events.storeError(operation);
    const problem = `${this.#o.store.type} store: ${(error as Error).message}`;
    if (problem !== this.#storeProblem) this.#log.error({ operation }, `${problem}; serving the current token and retrying`);
    this.#storeProblem = problem;
  }

  #storeRecovered(): void {
    if (this.#storeProblem === undefined) return;
    this.#log.info(`${this.#o.store.type} store reachable again`);
    this.#storeProblem = undefined;
  }

  #reportAnomaly(anomaly: LifetimeAnomaly, lifetimeMs: number): void {
    this.#o.events.lifetimeAnomaly(anomaly);
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

  #markSpent(refreshToken: Secret): void {
    if (this.#spentRefreshTokens.size >= SPENT_MEMORY) {
      const oldest = this.#spentRefreshTokens.values().next().value;
      if (oldest !== undefined) this.#spentRefreshTokens.delete(oldest);
    }
    this.#spentRefreshTokens.add(digest(refreshToken));
  }

  #isSpent(refreshToken: Secret): boolean {
    return this.#spentRefreshTokens.has(digest(refreshToken));
  }

  #resolveWaiters(): void {
    for (const waiter of this.#waiters) this.#resolveWaiter(waiter);
  }

  #resolveWaiter(waiter: Waiter): void {
    const token = this.current();
    if (token === undefined || token.generation <= waiter.afterGeneration) return;
    this.#o.clock.clearTimer(waiter.timer);
    this.#waiters.delete(waiter);
    waiter.resolve(token);
  }

  #rejectWaiter(waiter: Waiter, error: TokenUnavailableError): void {
    this.#o.clock.clearTimer(waiter.timer);
    this.#waiters.delete(waiter);
    waiter.reject(error);
  }

  #unavailable(now: number): TokenUnavailableError {
    const retryAfter = this.#nextAt === undefined ? 1 : Math.max(1, Math.ceil((this.#nextAt - now) / 1000));
    const reason = this.#notReadyReason(now) ?? 'no valid token';
    return new TokenUnavailableError(`no valid token for account ${this.account}: ${reason}`, retryAfter);
  }
}

function digest(secret: Secret): string {
  return createHash('sha256').update(secret.reveal()).digest('hex');
}
