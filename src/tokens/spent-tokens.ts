import { LRUCache } from 'lru-cache';
import { sha256Hex, type Secret } from '../util/secret.js';

/** How many spent refresh tokens are remembered to refuse sending one again (T3). */
const SPENT_MEMORY = 64;

/**
 * T3: the refresh tokens this process has spent (rotated away, rejected, or consumed by an
 * unusable answer), so none is ever sent again. Kept as SHA-256 digests, never the tokens
 * themselves; past SPENT_MEMORY the least recently spent are forgotten.
 */
export class SpentRefreshTokens {
  readonly #digests = new LRUCache<string, true>({ max: SPENT_MEMORY });

  add(refreshToken: Secret): void {
    this.#digests.set(digest(refreshToken), true);
  }

  has(refreshToken: Secret): boolean {
    return this.#digests.has(digest(refreshToken));
  }
}

function digest(secret: Secret): string {
  return sha256Hex(secret.reveal());
}
