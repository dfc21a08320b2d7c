import type { TokenRequestKind } from '../flows/types.js';
import type { Logger } from '../util/logger.js';
import type { ActiveToken } from './active-token.js';
import type { AccountState } from './types.js';

/**
 * Whether one account is ready, and why not (T4, T5, T7): the credentials the server refuses,
 * the last error, the token that ran out with no new one. What /readyz, /status and 503
 * bodies say; the log marks each change once, not each failure.
 */
export class Readiness {
  readonly #log: Logger;
  /** Why the server refuses this account's credentials; set until a token is obtained again. */
  #rejection: string | undefined;
  #lastError: { at: number; message: string } | undefined;
  /** Set once the "token expired, no new one" state change is logged; cleared by the next token. */
  #expiryLogged = false;

  constructor(log: Logger) {
    this.#log = log;
  }

  get lastError(): { at: number; message: string } | undefined {
    return this.#lastError;
  }

  /** True while the server refuses the account's credentials. */
  get refused(): boolean {
    return this.#rejection !== undefined;
  }

  /** A token request failed or was rejected at `at`. */
  failed(at: number, message: string): void {
    this.#lastError = { at, message };
  }

  /** T4, T5: the server refuses the account's credentials: unready until a token comes (logged when the reason changes). */
  credentialsRefused(kind: TokenRequestKind, reason: string): void {
    const rejection =
      kind === 'login'
        ? `login rejected: ${reason}`
        : `refresh token rejected and no credentials to log in with: ${reason}`;
    if (rejection !== this.#rejection)
      this.#log.error({ reason }, `account unready: ${rejection}; retrying no more than once a minute`);
    this.#rejection = rejection;
  }

  /** T7 state change: the token ran out before a new one could be had. Logged once per token. */
  noteExpiry(token: ActiveToken | undefined, now: number): void {
    if (token === undefined || this.#expiryLogged || now < token.expiresAt) return;
    this.#expiryLogged = true;
    this.#log.error(
      {
        fingerprint: token.fingerprint,
        expiredAt: new Date(token.expiresAt).toISOString(),
        lastError: this.#lastError?.message,
      },
      'account unready: the token expired and no new one could be had yet; requests get 503 token_unavailable',
    );
  }

  /** A token was obtained: ready again, which the log says when the account was not. */
  tokenObtained(): void {
    if (this.#rejection !== undefined) this.#log.info('credentials accepted again; account is ready');
    else if (this.#expiryLogged) this.#log.info('token obtained; account is ready again');
    this.#expiryLogged = false;
    this.#rejection = undefined;
    this.#lastError = undefined;
  }

  /** A valid token came from the store (another replica's): the credentials are no longer the problem. */
  tokenAdopted(): void {
    this.#rejection = undefined;
  }

  /** Why the account is not ready, or undefined when it is. */
  notReadyReason(token: ActiveToken | undefined, now: number): string | undefined {
    if (this.#rejection !== undefined) return this.#rejection;
    if (token !== undefined && now < token.expiresAt) return undefined;
    const last = this.#lastError === undefined ? '' : `; last error: ${this.#lastError.message}`;
    if (token === undefined) return `no token yet${last}`;
    return `token expired at ${new Date(token.expiresAt).toISOString()}${last}`;
  }

  /**
   * The account's state for /status and the state gauge (P4). `degraded`: the token is valid
   * but something is wrong (`activity.degraded`, see account-state.ts).
   */
  state(
    token: ActiveToken | undefined,
    now: number,
    activity: { stopped: boolean; refreshing: boolean; degraded?: boolean },
  ): AccountState {
    if (activity.stopped) return 'stopped';
    if (activity.refreshing) return 'refreshing';
    if (token !== undefined && now < token.expiresAt) {
      if (this.#rejection !== undefined) return 'rejected';
      return activity.degraded === true ? 'degraded' : 'valid';
    }
    if (this.#rejection !== undefined) return 'rejected';
    return token === undefined ? 'starting' : 'expired';
  }
}
