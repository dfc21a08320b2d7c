import type { Clock, TimerHandle } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { readSecretFile, type SecretFile } from '../util/secret-file.js';
import { sha256Hex } from '../util/secret.js';
import type { RefreshRequestResult } from './types.js';

/** P2: each credential file is read at least this often (ms). */
export const CREDENTIAL_CHECK_INTERVAL_MS = 5_000;
/** P2: the reason a `POST /accounts/NAME/refresh` is deferred during a rejected-login backoff. */
const SAME_CREDENTIALS_REJECTED = 'the same credentials were rejected';

export interface CredentialWatchOptions {
  /** The account's secret files (password, client secret, refresh token); pipes are never read again. */
  files: readonly SecretFile[];
  clock: Pick<Clock, 'setTimer' | 'clearTimer'>;
  log: Logger;
  /** What the watch needs of its account (token-manager.ts). */
  account: WatchedAccount;
  intervalMs?: number;
}

/** The account's side of P2. */
export interface WatchedAccount {
  /** True while the server refuses the account's credentials (T5: a rejected-login backoff runs). */
  refused(): boolean;
  /** A guarded token request (T6). */
  request(trigger: 'admin' | 'retry'): RefreshRequestResult;
  /** True when the pending attempt is the backoff's retry. */
  heldByBackoff(): boolean;
  /** Disarms the pending backoff retry (unless a request is in flight). */
  cancelBackoff(): void;
}

/**
 * P2: the credentials an account uses, by content. Every file is read every 5 s on the injected
 * clock's timers and hashed together (SHA-256; the secrets themselves are not kept): a rewrite
 * and Kubernetes' symlink swap both change the content, a touch or a swap to the same content do
 * not. The manager marks the credentials a rejected login was sent with (`rejected`), so it can
 * tell new credentials from the same ones (`changedSinceRejection`). A file that cannot be read
 * just now (mid-swap, removed) changes nothing: R6 keeps its last good value for the login.
 */
export class CredentialWatch {
  readonly #o: CredentialWatchOptions;
  readonly #files: readonly SecretFile[];
  /** Hash of each file's content at the last read that succeeded. */
  readonly #hashes = new Map<string, string>();
  #timer: TimerHandle | undefined;
  /** The last read started: the next one waits for it. */
  #reading: Promise<boolean> | undefined;
  #rejectedWith: string | undefined;
  #stopped = false;

  constructor(options: CredentialWatchOptions) {
    this.#o = options;
    this.#files = options.files.filter((file) => !file.pipe);
  }

  /** True when there is something to watch. */
  get watching(): boolean {
    return this.#files.length > 0;
  }

  /** Takes the files' current content as the baseline and checks them every interval from now on. */
  async start(): Promise<void> {
    if (!this.watching) return;
    await this.reread();
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#o.clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  /** Reads every file now, after any read in progress (reads never overlap). True when some content changed since the last read. */
  reread(): Promise<boolean> {
    const read = (this.#reading ?? Promise.resolve(false)).then(() => this.#readAll());
    this.#reading = read;
    return read;
  }

  /**
   * `POST /accounts/NAME/refresh`: outside a rejected-login backoff, a guarded request. During
   * one, the files are read at once: new credentials log in now (held only by minInterval), the
   * same ones wait for the backoff (`deferred`, with the reason).
   */
  async adminRefresh(): Promise<RefreshRequestResult> {
    const account = this.#o.account;
    if (!account.refused()) return account.request('admin');
    await this.reread();
    if (this.changedSinceRejection) return this.#loginWithNewCredentials('admin');
    const outcome = account.request('admin');
    const heldByBackoff = outcome.result === 'deferred' && account.heldByBackoff();
    return heldByBackoff ? { ...outcome, reason: SAME_CREDENTIALS_REJECTED } : outcome;
  }

  /** Resolves once no read runs (true when one was waited for). */
  async idle(): Promise<boolean> {
    const reading = this.#reading;
    if (reading === undefined) return false;
    await reading.catch(() => undefined);
    if (this.#reading === reading) this.#reading = undefined;
    return true;
  }

  /** The credentials last read were rejected by the token server. */
  rejected(): void {
    this.#rejectedWith = this.#fingerprint();
  }

  /** True when the credentials read last differ from those that were rejected (false before any rejection). */
  get changedSinceRejection(): boolean {
    return this.#rejectedWith !== undefined && this.#rejectedWith !== this.#fingerprint();
  }

  #fingerprint(): string {
    return this.#files.map((file) => this.#hashes.get(file.path) ?? '-').join(':');
  }

  async #readAll(): Promise<boolean> {
    let changed = false;
    for (const file of this.#files) {
      let hash: string;
      try {
        hash = sha256Hex((await readSecretFile(file.path)).reveal());
      } catch {
        continue; // mid-swap or broken: R6 keeps the last good value; nothing changed yet
      }
      const before = this.#hashes.get(file.path);
      this.#hashes.set(file.path, hash);
      if (before !== undefined && before !== hash) changed = true;
    }
    return changed;
  }

  /** A login with new credentials now, without waiting for the rejected-login backoff (minInterval still holds). */
  #loginWithNewCredentials(trigger: 'admin' | 'retry'): RefreshRequestResult {
    this.#o.log.info('credentials changed since they were rejected: logging in again without waiting for the backoff');
    this.#o.account.cancelBackoff();
    return this.#o.account.request(trigger);
  }

  #arm(): void {
    if (this.#stopped) return;
    this.#timer = this.#o.clock.setTimer(() => void this.#tick(), this.#o.intervalMs ?? CREDENTIAL_CHECK_INTERVAL_MS);
  }

  async #tick(): Promise<void> {
    this.#arm(); // a steady cadence: the next look is due 5 s after this one began, whatever the read takes
    try {
      if ((await this.reread()) && !this.#stopped) {
        this.#o.log.info('credential files changed');
        if (this.#o.account.refused() && this.changedSinceRejection) this.#loginWithNewCredentials('retry');
      }
    } catch (error) {
      this.#o.log.error({ err: error }, 'credential check failed');
    }
  }
}
