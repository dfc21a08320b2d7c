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
  /**
   * H2: the fingerprint of the credentials that made this chain (config/credentials-fingerprint.ts);
   * undefined for a record written by an older version, or by a token manager told none.
   */
  credentials?: string | undefined;
}

/** A stored state and its revision: every save makes a new, higher revision. */
export interface StoredToken {
  state: TokenState;
  revision: number;
}

/** On a failed compare-and-set, `current` is the record the comparison was made against (read in the same atomic step). */
export type SaveResult = { saved: true; record: StoredToken } | { saved: false; current: StoredToken | undefined };

/** A per-account lock with an expiry (T10): one token request at a time across replicas. */
export interface StoreLock {
  /** Extends the expiry; false once the lock has expired (whether or not another holder took it). */
  extend(ttlMs: number): Promise<boolean>;
  /** Releases the lock if this holder still owns it (never someone else's). */
  release(): Promise<void>;
}

/** The revision a save makes: one above both the stored one and the one the writer last knew (see `save`). */
export function nextRevision(stored: number | null | undefined, lastKnownRevision: number): number {
  return Math.max(stored ?? 0, lastKnownRevision) + 1;
}

/**
 * Where token state lives. `memory` is the reference implementation; `file` and `redis`
 * implement the same contract and run the same conformance suite (test/contract).
 *
 * Every operation may reject (disk full, Redis down): the token manager then keeps the newest
 * state in memory, serves the valid token, and retries. A failed `save` is not durable.
 * A store that loses its data (a file set aside, Redis restarted without persistence) starts
 * again from nothing; the replica that writes first then passes the revision it knew, so the
 * new record's revision is above every revision a replica holds in memory.
 */
export interface TokenStore {
  readonly type: 'memory' | 'file' | 'redis';
  /** True when other processes share this store (their saves arrive through `subscribe`). */
  readonly shared: boolean;
  load(account: string): Promise<StoredToken | undefined>;
  /**
   * Saves a new state; resolves once it is durable. With `expectedRevision` it is a
   * compare-and-set: a number must equal the stored revision, null means "nothing stored yet".
   * `lastKnownRevision` puts the new revision above it: a state re-written after the store lost
   * its data must still look newer to replicas holding an older one, or one of them would send
   * its spent refresh token again (T3, T10).
   */
  save(
    account: string,
    state: TokenState,
    expectedRevision?: number | null,
    lastKnownRevision?: number,
  ): Promise<SaveResult>;
  /** Takes the account's lock for `ttlMs`, or resolves undefined when another holder has it. */
  obtainLock(account: string, ttlMs: number): Promise<StoreLock | undefined>;
  /** Calls `onChange` when another process saves this account's state; returns an unsubscribe. */
  subscribe(account: string, onChange: () => void): () => void;
  /**
   * H1: waits (at most `timeoutMs` ms) until a replica of a replicated store holds the account's
   * last save; true when one does or there is none, false on a timeout. Absent on stores with no
   * replicas (memory, file).
   */
  replicate?(account: string, timeoutMs: number): Promise<boolean>;
  /** Resolves once the store can be used (a network store's first connection); rejects if it cannot. */
  ready?(): Promise<void>;
  close(): Promise<void>;
}
