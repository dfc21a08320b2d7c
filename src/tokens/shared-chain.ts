import type { StoredToken, StoreLock, TokenState, TokenStore } from '../stores/types.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { Secret } from '../util/secret.js';
import type { StoreOperation, TokenEvents, TokenStatus } from './types.js';
import { messageOf } from '../util/errors.js';

/** The lock outlives the token request's own timeout by this much, and is extended while it runs (T10). */
const LOCK_MARGIN_MS = 5_000;
/** While another replica holds the lock, look again this often (its result normally arrives by notification first). */
const FOLLOW_INTERVAL_MS = 1_000;

export interface SharedChainOptions {
  account: string;
  store: TokenStore;
  clock: Clock;
  /** The token request's timeout (refresh.timeout): the lock's expiry and the renew-anyway window follow from it. */
  timeoutMs: number;
  events: Pick<TokenEvents, 'storeError'>;
  /** The account's logger. */
  log: Logger;
  /**
   * H2: the fingerprint of the account's credentials, computed once from construction on (reading
   * a record and saving wait for it); absent: every record is ours. A failed computation is
   * logged, every record is taken as ours meanwhile (saved unmarked), and it is tried again at
   * the next read or save.
   */
  credentials?: (() => Promise<string>) | undefined;
  /** H2: what a record without a fingerprint (an older version's) is taken for; default `adopt`. */
  unmarkedRecords?: UnmarkedRecords | undefined;
  /** H2: a record of other credentials, newer than the state held, was read: our chain in the store is gone. */
  onOtherCredentials?: () => void;
}

/** H2: what a record without a credentials fingerprint (written by an older version) is taken for. */
export type UnmarkedRecords = 'adopt' | 'foreign';

/** What taking the account's lock before a token request came to (T10). */
export type LockAttempt =
  /** Ours. `newer` is a state another replica saved meanwhile, re-read after taking the lock. */
  | { type: 'locked'; lock: HeldLock; newer: StoredToken | undefined }
  /** Another replica is asking; its token arrives by notification, or its lock expires: look again at `lookAgainAt`. */
  | { type: 'held_elsewhere'; lookAgainAt: number }
  /** The store cannot be reached and the token is about to expire: renew without the lock (logged). */
  | { type: 'renew_unlocked' }
  /** The store cannot be reached; the valid token is served, and the retry comes no later than `retryNotAfter`. */
  | { type: 'unreachable'; retryNotAfter: number };

export type SaveOutcome =
  | { type: 'saved' }
  /** Another replica saved meanwhile (our lock expired): `newer` is its state, to adopt instead. */
  | { type: 'superseded'; newer: StoredToken | undefined }
  /** The store cannot be reached, or (H2) other credentials saved meanwhile: the newest state stays in memory only (never lost). */
  | { type: 'unsaved' };

/**
 * T10: one account's chain in a store other replicas may share. Takes the account's lock
 * before a token request and re-reads the store under it, keeps the lock alive while the
 * request runs, saves with compare-and-set against the revision held, and says when the
 * store cannot be reached (the valid token keeps being served; only a token about to
 * expire is renewed without the lock).
 */
export class SharedChain {
  readonly #o: SharedChainOptions;
  /** Revision of the stored state this process holds (compare-and-set). */
  #revision: number | undefined;
  #problem: string | undefined;
  #unsubscribe: () => void = () => undefined;
  /** H2: the fingerprint of our credentials, stamped on every save; undefined: none (every record is ours). */
  #credentials: string | undefined;
  /** H2: until the fingerprint is known, reads and saves wait for it (the first read is sent meanwhile); never rejects. */
  #credentialsKnown: Promise<void> = Promise.resolve();
  /** H2: the last computation of the fingerprint failed: the next read or save tries again. */
  #credentialsFailed = false;

  constructor(options: SharedChainOptions) {
    this.#o = options;
    // H2: computed once, from construction on, so a first login's save rarely waits for it.
    this.#computeCredentials();
  }

  #computeCredentials(): void {
    const { credentials } = this.#o;
    if (credentials === undefined) return;
    this.#credentialsKnown = Promise.resolve()
      .then(credentials)
      .then(
        (known) => {
          if (this.#credentialsFailed) this.#o.log.info("the credentials' fingerprint is computed again");
          this.#credentials = known;
          this.#credentialsFailed = false;
        },
        (error: unknown) => {
          if (!this.#credentialsFailed)
            this.#o.log.error(
              { err: messageOf(error) },
              "cannot compute the credentials' fingerprint: every stored record is taken as this account's own and saved without one until it is computed (tried again at each read and save)",
            );
          this.#credentialsFailed = true;
        },
      );
  }

  /** H2: waits for the fingerprint; after a failed computation, computes it once more first. */
  async #knowCredentials(): Promise<void> {
    await this.#credentialsKnown;
    if (!this.#credentialsFailed) return;
    this.#computeCredentials();
    await this.#credentialsKnown;
  }

  get revision(): number | undefined {
    return this.#revision;
  }

  /** Why the store cannot be used right now, if so. */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** The store's part of an account's status (TokenStatus). */
  statusFields(): Pick<TokenStatus, 'storeProblem' | 'revision'> {
    return { storeProblem: this.#problem, revision: this.#revision };
  }

  /** Replicas hear of each other's saves (shared stores only). */
  watch(onChange: () => void): void {
    if (this.#o.store.shared) this.#unsubscribe = this.#o.store.subscribe(this.#o.account, onChange);
  }

  stop(): void {
    this.#unsubscribe();
  }

  /** H2: `stored` when it belongs to our credentials, else undefined (reported when newer than ours). */
  #ours(stored: StoredToken | undefined): StoredToken | undefined {
    if (stored === undefined || this.#isOurs(stored)) return stored;
    if (this.isNewer(stored)) {
      this.#o.log.info(
        { revision: stored.revision },
        "the store holds this account's chain of other credentials (a change of auth rolling out?): not adopting it",
      );
      this.#o.onOtherCredentials?.();
    }
    return undefined;
  }

  #isOurs(stored: StoredToken): boolean {
    const marked = stored.state.credentials;
    if (this.#credentials === undefined || marked === this.#credentials) return true;
    return marked === undefined && this.#o.unmarkedRecords !== 'foreign';
  }

  /** True when `stored` is newer than the state this process holds. */
  isNewer(stored: StoredToken): boolean {
    return stored.revision > (this.#revision ?? 0);
  }

  /** The state this process now holds came from the store at `revision`. */
  holdRevision(revision: number): void {
    this.#revision = revision;
  }

  /** The stored state, or undefined when there is none or the store cannot be reached. */
  async load(): Promise<StoredToken | undefined> {
    try {
      const stored = await this.#o.store.load(this.#o.account);
      this.#recovered();
      // An empty store needs no fingerprint: a first start logs in without waiting for it.
      if (stored === undefined) return undefined;
      await this.#knowCredentials();
      return this.#ours(stored);
    } catch (error) {
      this.#failed('load', error);
      return undefined;
    }
  }

  /** The stored state when it is newer than the one held. */
  async loadNewer(): Promise<StoredToken | undefined> {
    const stored = await this.load();
    return stored !== undefined && this.isNewer(stored) ? stored : undefined;
  }

  /** After a rejected refresh: the stored state when it holds another refresh token (the chain went on elsewhere). */
  async loadOtherChain(rejected: Secret): Promise<StoredToken | undefined> {
    const stored = await this.load();
    const storedRefresh = stored?.state.refreshToken;
    return storedRefresh === undefined || storedRefresh.equals(rejected) ? undefined : stored;
  }

  /**
   * Takes the account's lock for a token request, then re-reads the store. `expiresAt` is the
   * valid token's expiry: from two request timeouts before it, an unreachable store no longer
   * stops the renewal.
   */
  async lockForRequest(expiresAt: number | undefined): Promise<LockAttempt> {
    let lock: StoreLock | undefined;
    try {
      lock = await this.#o.store.obtainLock(this.#o.account, this.#lockTtl());
      this.#recovered();
    } catch (error) {
      this.#failed('lock', error);
      const renewAnywayAt = expiresAt === undefined ? Number.NEGATIVE_INFINITY : expiresAt - 2 * this.#o.timeoutMs;
      if (this.#o.clock.now() < renewAnywayAt) return { type: 'unreachable', retryNotAfter: renewAnywayAt };
      this.#o.log.warn(
        { store: this.#o.store.type },
        'renewing the token without the store lock: the store is unreachable and the token would expire',
      );
      return { type: 'renew_unlocked' };
    }
    if (lock === undefined) return { type: 'held_elsewhere', lookAgainAt: this.#o.clock.now() + FOLLOW_INTERVAL_MS };
    const held = new HeldLock(lock, {
      clock: this.#o.clock,
      log: this.#o.log,
      ttlMs: this.#lockTtl(),
      onError: (error) => this.#failed('lock', error),
    });
    return { type: 'locked', lock: held, newer: await this.loadNewer() };
  }

  /**
   * Saves with compare-and-set against the revision held. A store that lost its data (a Redis
   * restart) gets ours afresh, with a revision above the one we held, so replicas still holding
   * that one see ours as newer and adopt it instead of spending their (already spent) refresh token.
   */
  async save(given: TokenState): Promise<SaveOutcome> {
    try {
      await this.#knowCredentials();
      const state = this.#credentials === undefined ? given : { ...given, credentials: this.#credentials };
      let result = await this.#o.store.save(this.#o.account, state, this.#revision ?? null);
      if (!result.saved && result.current === undefined)
        result = await this.#o.store.save(this.#o.account, state, null, this.#revision);
      else if (!result.saved && result.current !== undefined && !this.#isOurs(result.current))
        // H2: another credentials' record reads as absent: replace that very record, once.
        result = await this.#o.store.save(this.#o.account, state, result.current.revision, this.#revision);
      this.#recovered();
      if (result.saved) {
        this.#revision = result.record.revision;
        if (state.refreshToken !== undefined) await this.#replicate();
        return { type: 'saved' };
      }
      const newer = result.current;
      if (newer === undefined || !this.#isOurs(newer)) {
        // Never a loop of writes: the new state is used from memory and saved with the next one.
        this.#o.log.warn('another replica with other credentials saved meanwhile: keeping the new token in memory');
        return { type: 'unsaved' };
      }
      this.#o.log.warn(
        { revision: newer.revision },
        'another replica saved a newer state during this token request: adopting it',
      );
      return { type: 'superseded', newer };
    } catch (error) {
      this.#failed('save', error);
      return { type: 'unsaved' };
    }
  }

  /**
   * T3 across processes: the server consumed `spent` (it rejected it, or answered with tokens we
   * cannot use). When the stored state still holds it, it is saved again without a refresh token,
   * so no other replica, and no restart of this one, sends it again. Called under the account's
   * lock; a store that cannot be reached or a newer stored chain leaves the store as it is.
   */
  async forgetSpent(spent: Secret): Promise<void> {
    const stored = await this.load();
    if (stored === undefined || !spent.equals(stored.state.refreshToken)) return;
    try {
      const result = await this.#o.store.save(
        this.#o.account,
        { ...stored.state, refreshToken: undefined },
        stored.revision,
      );
      if (result.saved) this.#revision = result.record.revision;
    } catch (error) {
      this.#failed('save', error);
    }
  }

  /**
   * H1: a save that carries a refresh token waits (at most the token-request timeout) until a
   * replica of the store has it, so a failover right after cannot bring back the spent one. A
   * timeout is counted and logged, and the new state is used anyway: it is saved on the master.
   */
  async #replicate(): Promise<void> {
    const { store, account, timeoutMs } = this.#o;
    if (store.replicate === undefined) return;
    let problem: string | undefined;
    try {
      if (!(await store.replicate(account, timeoutMs))) problem = 'no replica acknowledged it in time';
    } catch (error) {
      problem = messageOf(error);
    }
    if (problem === undefined) return;
    this.#o.events.storeError('replicate');
    this.#o.log.warn(
      { operation: 'replicate' },
      `${store.type} store: the new refresh token is saved on the master but ${problem}; a failover now could lose it`,
    );
  }

  #lockTtl(): number {
    return this.#o.timeoutMs + LOCK_MARGIN_MS;
  }

  #failed(operation: StoreOperation, error: unknown): void {
    this.#o.events.storeError(operation);
    const problem = `${this.#o.store.type} store: ${messageOf(error)}`;
    if (problem !== this.#problem)
      this.#o.log.error({ operation }, `${problem}; serving the current token and retrying`);
    this.#problem = problem;
  }

  #recovered(): void {
    if (this.#problem === undefined) return;
    this.#o.log.info(`${this.#o.store.type} store reachable again`);
    this.#problem = undefined;
  }
}

interface HeldLockOptions {
  clock: Clock;
  log: Logger;
  /** Each extension keeps the lock this long. */
  ttlMs: number;
  onError(error: unknown): void;
}

/** The account's lock, held for one token request (T10). */
export class HeldLock {
  readonly #lock: StoreLock;
  readonly #o: HeldLockOptions;
  #timer: TimerHandle | undefined;

  constructor(lock: StoreLock, options: HeldLockOptions) {
    this.#lock = lock;
    this.#o = options;
  }

  /** Extends the lock while the token request runs, so a slow answer does not let another replica in. */
  keepAlive(): void {
    this.#timer = this.#o.clock.setTimer(() => {
      void this.#lock.extend(this.#o.ttlMs).then(
        (kept) => (kept ? this.keepAlive() : this.#o.log.warn('lost the store lock during a token request')),
        (error: unknown) => this.#o.onError(error),
      );
    }, this.#o.ttlMs / 3);
  }

  /** Stops extending the lock and releases it (a store error is reported, not thrown). */
  async release(): Promise<void> {
    if (this.#timer !== undefined) this.#o.clock.clearTimer(this.#timer);
    await this.#lock.release().catch((error: unknown) => this.#o.onError(error));
  }
}
