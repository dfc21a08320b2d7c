import type { Secret } from '../util/secret.js';
import { SpentRefreshTokens } from './spent-tokens.js';

/** T5: after this many attempts with one refresh token got no clear answer, it may have been consumed. */
const UNCLEAR_ANSWERS_TO_DOUBT = 2;

/**
 * The newest refresh token of one account's chain (T3) and what is known about it: the refresh
 * tokens spent before it, never to be sent again, and how many attempts with it reached the
 * server but got no clear answer (T5: then it may be consumed, and a login is tried instead).
 */
export class HeldRefreshToken {
  /** T3: the spent ones; H2: a reload's new token manager for the same credentials takes them over. */
  readonly spent: SpentRefreshTokens;
  #token: Secret | undefined;
  #unclearAnswers = 0;
  /** H2: another credentials' record replaced our chain in the store since this token was taken. */
  #replacedInStore = false;

  /** `spent`: the memory of spent refresh tokens to go on with (H2: the replaced manager's), else a new one. */
  constructor(spent = new SpentRefreshTokens()) {
    this.spent = spent;
  }

  get current(): Secret | undefined {
    return this.#token;
  }

  /** T5: attempts with the held token got no clear answer often enough that it may be consumed. */
  get doubtful(): boolean {
    return this.#unclearAnswers >= UNCLEAR_ANSWERS_TO_DOUBT;
  }

  /**
   * The refresh token to send, or undefined when a login is the safer choice because it may be
   * consumed (T5), is known to be spent (T3: a stored chain brought it back), or is shared and not
   * locked (`unlockedShared`, T10: another replica may be spending it now), or the store's copy
   * of the chain was replaced by other credentials' (H2: a replica with our credentials may have
   * spent it and its save been overwritten before we read it). Without `canLogin` the
   * risk is taken, there being no other way (a spent token is then refused by the exchange).
   */
  toSend(options: { canLogin: boolean; unlockedShared: boolean }): Secret | undefined {
    const token = this.#token;
    if (token === undefined) return undefined;
    const risky = this.doubtful || this.isSpent(token) || options.unlockedShared || this.#replacedInStore;
    return risky && options.canLogin ? undefined : token;
  }

  /** T3: true for a refresh token this process has spent. */
  isSpent(refreshToken: Secret): boolean {
    return this.spent.has(refreshToken);
  }

  /** T3: `refreshToken` was spent (rotated away, or another replica's chain replaces it): never send it again. */
  markSpent(refreshToken: Secret): void {
    this.spent.add(refreshToken);
  }

  /** T3: `refreshToken` is dead (rejected, or consumed by an unusable answer): remembered as spent, and dropped if held. */
  discard(refreshToken: Secret): void {
    this.spent.add(refreshToken);
    if (refreshToken.equals(this.#token)) this.#token = undefined;
    this.#unclearAnswers = 0;
  }

  /**
   * H2: a record of other credentials replaced the one of our chain in the store: a replica with
   * our credentials may have spent the held token unseen, so a login is preferred to it.
   */
  replacedInStore(): void {
    this.#replacedInStore = true;
  }

  /** T3: the refresh token of a new state replaces the held one, before anything else happens. */
  replaceWith(refreshToken: Secret | undefined): void {
    this.#token = refreshToken;
    this.#replacedInStore = false;
  }

  /** A state taken from the store: its refresh token is the newest of the chain, with nothing against it. */
  adopt(refreshToken: Secret | undefined): void {
    this.#token = refreshToken;
    this.#unclearAnswers = 0;
    this.#replacedInStore = false;
  }

  /** A token was obtained: nothing is held against the refresh token any more. */
  answeredClearly(): void {
    this.#unclearAnswers = 0;
  }

  /** T5: a refresh with `sent` reached the server but got no clear answer: if it is the held token, it may be spent. */
  unclearAnswer(sent: Secret): void {
    if (sent.equals(this.#token)) this.#unclearAnswers += 1;
  }
}
