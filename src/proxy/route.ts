import type { IncomingMessage } from 'node:http';
import { matchesPrefix } from './paths.js';

export const ACCOUNT_HEADER = 'x-sidecar-account';

export interface RoutableAccount {
  name: string;
  isDefault: boolean;
  route: { pathPrefix?: string; port?: number };
}

export type RouteResult<A> = { account: A; rest: string } | { error: string };

/**
 * Route precedence (docs/contract.md §3): the listener's own account; then X-Sidecar-Account;
 * then the longest whole-segment path prefix (stripped); then the default account.
 */
export class Router<A extends RoutableAccount> {
  readonly #byName: Map<string, A>;
  /** Longest prefix first, so the first match is the longest. */
  readonly #byPrefix: Array<[string, A]>;
  readonly #default: A | undefined;

  constructor(accounts: readonly A[]) {
    this.#byName = new Map(accounts.map((account) => [account.name, account]));
    this.#byPrefix = accounts
      .filter((account) => account.route.pathPrefix !== undefined)
      .map((account): [string, A] => [account.route.pathPrefix as string, account])
      .sort((a, b) => b[0].length - a[0].length);
    this.#default = accounts.find((account) => account.isDefault);
  }

  route(req: IncomingMessage, path: string, listenerAccount: A | undefined): RouteResult<A> {
    if (listenerAccount !== undefined) return { account: listenerAccount, rest: path };
    const named = req.headers[ACCOUNT_HEADER];
    if (typeof named === 'string') {
      const account = this.#byName.get(named);
      return account === undefined
        ? { error: `no account named ${JSON.stringify(named.slice(0, 100))}` }
        : { account, rest: path };
    }
    for (const [prefix, account] of this.#byPrefix) {
      if (matchesPrefix(path, prefix)) return { account, rest: path.slice(prefix.length) };
    }
    if (this.#default !== undefined) return { account: this.#default, rest: path };
    return { error: 'no account matches this path and there is no default account' };
  }
}
