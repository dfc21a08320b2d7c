import type { TokenState, TokenStore } from './types.js';

/** The reference store: state lives as long as the process. */
export class MemoryTokenStore implements TokenStore {
  readonly type = 'memory';
  readonly #states = new Map<string, TokenState>();

  async load(account: string): Promise<TokenState | undefined> {
    const state = this.#states.get(account);
    return state === undefined ? undefined : { ...state };
  }

  async save(account: string, state: TokenState): Promise<void> {
    this.#states.set(account, { ...state });
  }

  async close(): Promise<void> {
    this.#states.clear();
  }
}
