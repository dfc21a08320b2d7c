import { randomUUID } from 'node:crypto';
import type { StoreLock } from './types.js';

/**
 * Locks for stores that live in one process (memory, file): a map of holders with expiries.
 * `now` is injectable so the conformance suite can expire a lock without waiting.
 */
export class LocalLocks {
  readonly #holders = new Map<string, { owner: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  obtain(account: string, ttlMs: number): StoreLock | undefined {
    const held = this.#holders.get(account);
    if (held !== undefined && held.expiresAt > this.now()) return undefined;
    const owner = randomUUID();
    this.#holders.set(account, { owner, expiresAt: this.now() + ttlMs });
    return {
      extend: async (extendMs) => {
        const current = this.#holders.get(account);
        if (current?.owner !== owner || current.expiresAt <= this.now()) return false;
        current.expiresAt = this.now() + extendMs;
        return true;
      },
      release: async () => {
        if (this.#holders.get(account)?.owner === owner) this.#holders.delete(account);
      },
    };
  }
}
