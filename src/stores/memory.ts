import { LocalLocks } from './local-lock.js';
import {
  nextRevision,
  type SaveResult,
  type StoredToken,
  type StoreLock,
  type TokenState,
  type TokenStore,
} from './types.js';

/** The reference store: state lives as long as the process. Every other store behaves like this one. */
export class MemoryTokenStore implements TokenStore {
  readonly type = 'memory';
  readonly shared = false;
  readonly #records = new Map<string, StoredToken>();
  readonly #locks: LocalLocks;

  constructor(options: { now?: () => number } = {}) {
    this.#locks = new LocalLocks(options.now);
  }

  async load(account: string): Promise<StoredToken | undefined> {
    const record = this.#records.get(account);
    return record === undefined ? undefined : { state: { ...record.state }, revision: record.revision };
  }

  async save(
    account: string,
    state: TokenState,
    expectedRevision?: number | null,
    lastKnownRevision = 0,
  ): Promise<SaveResult> {
    const current = this.#records.get(account);
    if (expectedRevision !== undefined && (current?.revision ?? null) !== expectedRevision) {
      return {
        saved: false,
        current: current === undefined ? undefined : { state: { ...current.state }, revision: current.revision },
      };
    }
    const record: StoredToken = { state: { ...state }, revision: nextRevision(current?.revision, lastKnownRevision) };
    this.#records.set(account, record);
    return { saved: true, record: { state: { ...state }, revision: record.revision } };
  }

  async obtainLock(account: string, ttlMs: number): Promise<StoreLock | undefined> {
    return this.#locks.obtain(account, ttlMs);
  }

  subscribe(): () => void {
    // Nobody else writes to a process's own memory.
    return () => undefined;
  }

  async close(): Promise<void> {
    this.#records.clear();
  }
}
