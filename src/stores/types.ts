import type { Secret } from '../util/secret.js';

/** What survives between token requests (and, with file/redis stores, between processes). */
export interface TokenState {
  accessToken: Secret;
  /** Local-clock times, in ms since the epoch. */
  obtainedAt: number;
  expiresAt: number;
  lifetimeMs: number;
  /** The newest refresh token of the chain (T3); absent when the server issues none. */
  refreshToken: Secret | undefined;
}

/**
 * Where token state lives. `memory` is the reference implementation; `file` and `redis`
 * implement the same contract and run the same conformance suite.
 */
export interface TokenStore {
  readonly type: string;
  load(account: string): Promise<TokenState | undefined>;
  /** Resolves once the state is durable: callers send nothing that depends on it before. */
  save(account: string, state: TokenState): Promise<void>;
  close(): Promise<void>;
}
