import type { SidecarMetrics } from './admin/metrics.js';
import type { AccountView } from './admin/status.js';
import { proxyFor, type EgressProxy } from './config/egress.js';
import { sameSetting, TOKEN_SIDE_PARTS } from './config/reload-diff.js';
import { credentialsFingerprint } from './config/credentials-fingerprint.js';
import { secretFilesOf } from './config/resolve.js';
import { tokenEndpointTls } from './config/tls.js';
import { createFlow } from './flows/index.js';
import { TokenEgress } from './flows/proxy-agent.js';
import type { TokenStore } from './stores/types.js';
import { SpentRefreshTokens } from './tokens/spent-tokens.js';
import { TokenManager } from './tokens/token-manager.js';
import type { SendTokenRequest } from './tokens/types.js';
import type { Clock } from './util/clock.js';
import type { Logger } from './util/logger.js';
import { reportSecretReads } from './util/secret-file.js';
import type { Tracing } from './util/tracing.js';
import type { AccountConfig } from './config/resolve.js';
import type { TokenFlow } from './flows/types.js';
import type { UpstreamAccount } from './proxy/upstream.js';
import type { Server } from 'node:http';
import { drainServers } from './app-listeners.js';

/** One account as the sidecar runs it: the data plane's view, the admin view, and what a reload compares. */
export interface RunningAccount extends UpstreamAccount, AccountView {
  flow: TokenFlow;
  status: TokenManager['status'];
  /** E6: the token endpoints' proxy agents (closed at stop). */
  tokenEgress: TokenEgress;
  /** H2: what it was built from (a reload compares it with the new settings). */
  config: AccountConfig;
  /** Removes the R6 listeners from its secret files (the config, and its files, may outlive it). */
  unwatchSecrets: Array<() => void>;
  /** T3: the refresh tokens its token manager spent (H2: a new manager for the same credentials goes on with them). */
  spentRefreshTokens: SpentRefreshTokens;
  /** H2: its token manager began a new chain after a change of `auth` (a later manager of the same `auth` inherits it). */
  newChain: boolean;
}

/** What building an account's token side needs from the sidecar. */
export interface TokenSideContext {
  metrics: SidecarMetrics;
  logger: Logger;
  clock: Clock;
  send: SendTokenRequest;
  random: (() => number) | undefined;
  /** H3: the running tracer, when tracing is configured. */
  tracing: (() => Tracing | undefined) | undefined;
  /** H2: the spent refresh tokens of the token manager this one replaces (same credentials). */
  spentRefreshTokens?: SpentRefreshTokens;
  /** H2: replaces a token manager of other credentials: a stored record without a fingerprint is not adopted. */
  newChain?: boolean;
}

/** What an account's token side is made of (a reload keeps it whole or replaces it whole: H2). */
export type TokenSide = Pick<
  RunningAccount,
  'manager' | 'flow' | 'tokenEgress' | 'status' | 'history' | 'unwatchSecrets' | 'spentRefreshTokens' | 'newChain'
> & {
  /** E6: the proxy (or none) for the token endpoint; the upstream's follows the upstream, built with the pool. */
  tokenEndpointProxy: EgressProxy | undefined;
};

/**
 * An account's token side: its flow, token manager, token-endpoint egress (its own TLS: E2) and
 * the watch on its secret files (R6). A reload keeps it while `auth` and the other token-side
 * settings are unchanged (H2).
 */
export function buildTokenSide(account: AccountConfig, store: TokenStore, context: TokenSideContext): TokenSide {
  const flow = createFlow(account.auth);
  const countFailure = context.metrics.secretReadErrors(account.name);
  const secretFiles = secretFilesOf(account.auth);
  const logger = context.logger.child({ account: account.name });
  const tokenTls = tokenEndpointTls(account);
  // E2: a bad rotation of the token endpoint's client certificate is reported as a secret file's failed read is.
  const watched = [...secretFiles, ...(tokenTls.clientCertificate === undefined ? [] : [tokenTls.clientCertificate])];
  const unwatchSecrets = watched.map((file) => reportSecretReads(file, { logger, countFailure }));
  // The token endpoint's own TLS (its client certificate, never the upstream's: E2).
  const tokenEgress = new TokenEgress(account.egress, {
    tls: tokenTls,
    connectTimeoutMs: account.timeouts.connectMs,
  });
  const spentRefreshTokens = context.spentRefreshTokens ?? new SpentRefreshTokens();
  const newChain = context.newChain === true;
  const manager = new TokenManager({
    account: account.name,
    flow,
    policy: account.refresh,
    store,
    clock: context.clock,
    events: context.metrics.tokenEvents(account.name),
    logger: context.logger,
    send: context.send,
    tls: { ...tokenTls, egress: tokenEgress },
    random: context.random,
    secretFiles,
    tracing: context.tracing,
    spentRefreshTokens,
    // H2: the memory store's records never leave the process: no scrypt for them.
    credentials: () => credentialsFingerprint(account.auth, { inProcess: store.type === 'memory' }),
    unmarkedRecords: newChain ? 'foreign' : 'adopt',
  });
  return {
    manager,
    flow,
    tokenEgress,
    tokenEndpointProxy: proxyFor(account.egress, new URL(flow.endpoint('login'))),
    status: () => manager.status(),
    history: manager.history,
    unwatchSecrets,
    spentRefreshTokens,
    newChain,
  };
}

/** H2: a changed account keeps its token side when `auth`, `refresh`, `upstreamTls`, `proxy` and `timeouts.connect` are unchanged. */
export function keepsTokenSide(old: AccountConfig, next: AccountConfig): boolean {
  const same = TOKEN_SIDE_PARTS.every((part) => sameSetting(old[part], next[part]));
  return same && old.timeouts.connectMs === next.timeouts.connectMs;
}

/** H2: the token side a rebuilt account keeps from its running one. */
export function tokenSideOf(running: RunningAccount): TokenSide {
  const { manager, flow, tokenEgress, status, history, unwatchSecrets, spentRefreshTokens, newChain } = running;
  const tokenEndpointProxy = running.proxies.tokenEndpoint;
  const kept = { manager, flow, tokenEgress, status, history, unwatchSecrets, spentRefreshTokens, newChain };
  return { ...kept, tokenEndpointProxy };
}

/**
 * H2: what a new token manager takes over from the one it replaces: its spent refresh tokens
 * (same `auth`), or the knowledge that it begins a new chain (`newChain`: `auth` changed, or
 * the one it replaces began one).
 */
export type ChainInheritance = Pick<TokenSideContext, 'spentRefreshTokens' | 'newChain'>;

/** How a reload builds one account: anew (taking over `chain`), or on a running account's token side (`keep`). */
export type BuildAccount = (
  config: AccountConfig,
  from?: { keep?: RunningAccount; chain?: ChainInheritance },
) => RunningAccount;

/** H2: a reload's accounts by name; `added` are new, `replaced` still need a new token manager. */
export interface AccountsPlan {
  accounts: Map<string, RunningAccount>;
  added: RunningAccount[];
  replaced: AccountConfig[];
}

/**
 * H2: the accounts of a reload that are built at once: unchanged ones as they run, changed ones
 * on their running token side, added ones anew. Those that need a new token manager are left in
 * `replaced` for replaceManagers.
 */
export function buildAccountsAtOnce(
  next: readonly AccountConfig[],
  previous: readonly RunningAccount[],
  build: BuildAccount,
): AccountsPlan {
  const plan: AccountsPlan = { accounts: new Map(), added: [], replaced: [] };
  for (const config of next) {
    const old = previous.find((account) => account.name === config.name);
    if (old === undefined) {
      const account = build(config);
      plan.accounts.set(config.name, account);
      plan.added.push(account);
    } else if (sameSetting(old.config, config)) plan.accounts.set(config.name, old);
    else if (keepsTokenSide(old.config, config)) plan.accounts.set(config.name, build(config, { keep: old }));
    else plan.replaced.push(config);
  }
  return plan;
}

/**
 * H2: a new token manager for each of `plan.replaced` (put in `plan.accounts`; returned, to be
 * started once the reload is applied). The old one stops first, so its last save is in the store
 * before the new one reads it. Same auth: the new one goes on with the old one's spent refresh
 * tokens (T3); new auth: a new chain that does not adopt the stored state (its records carry
 * the old credentials' fingerprint, or none: `newChain`), and so does a manager of the same auth
 * replacing one that began a new chain. Ends early once `stopping()` says so.
 */
export async function replaceManagers(
  plan: AccountsPlan,
  previous: readonly RunningAccount[],
  options: { build: BuildAccount; stopping: () => boolean },
): Promise<RunningAccount[]> {
  const fresh: RunningAccount[] = [];
  for (const config of plan.replaced) {
    if (options.stopping()) break;
    const old = previous.find((account) => account.name === config.name) as RunningAccount;
    await old.manager.stop();
    const authChanged = !sameSetting(old.config.auth, config.auth);
    const chain = authChanged
      ? { newChain: true }
      : { spentRefreshTokens: old.spentRefreshTokens, newChain: old.newChain };
    const account = options.build(config, { chain });
    plan.accounts.set(config.name, account);
    fresh.push(account);
  }
  return fresh;
}

/** H2: closes what a reload cancelled by stop() built: new upstream pools, and new token managers with their token side. */
export async function retireBuilt(
  built: readonly RunningAccount[],
  previous: readonly RunningAccount[],
): Promise<void> {
  const fresh = built.filter((account) => !previous.includes(account));
  const ownManager = (account: RunningAccount) => !previous.some((old) => old.manager === account.manager);
  await Promise.all(fresh.map((account) => retireAccount(account, { tokenSide: ownManager(account) })));
}

/** Closes an account's upstream pool; with `tokenSide`, also stops its token manager, agents and secret watch. */
export async function retireAccount(account: RunningAccount, options: { tokenSide: boolean }): Promise<void> {
  if (options.tokenSide) await account.manager.stop();
  await account.pool.destroy();
  if (!options.tokenSide) return;
  await account.tokenEgress.close();
  for (const unwatch of account.unwatchSecrets.splice(0)) unwatch();
}

/** H2: retires a replaced account once its requests have ended, or after `timeoutMs` at the latest. */
export async function retireWhenIdle(
  account: RunningAccount,
  options: { tokenSide: boolean; timeoutMs: number },
): Promise<void> {
  await Promise.race([account.slots.idle(), delay(options.timeoutMs)]);
  await retireAccount(account, options);
}

/**
 * H2: what reloads replaced, or built before a stop cut them short, closing in the background;
 * stop() waits for it. Each part closes once its requests have ended, at most `timeoutMs()`
 * (shutdownTimeout) after it was handed over.
 */
export class Retiring {
  readonly #pending = new Set<Promise<void>>();
  readonly #o: { logger: Logger; timeoutMs: () => number };

  constructor(options: { logger: Logger; timeoutMs: () => number }) {
    this.#o = options;
  }

  /** Replaced listeners and the accounts not `running` any more finish their requests, then close. */
  replaced(what: { servers: Server[]; previous: RunningAccount[]; running: RunningAccount[] }): void {
    const { servers, previous, running } = what;
    const timeoutMs = this.#o.timeoutMs();
    // Listeners and accounts wind down side by side: each within timeoutMs of the reload.
    const retiring = Promise.all([
      drainServers(servers, timeoutMs),
      ...previous
        .filter((account) => !running.includes(account))
        .map((account) => {
          const tokenSide = !running.some((other) => other.manager === account.manager);
          return retireWhenIdle(account, { tokenSide, timeoutMs });
        }),
    ]);
    this.#track(retiring.then(() => undefined));
  }

  /**
   * What a reload cut short by a stop built: the accounts `built` for its new ports close once the
   * stop has drained those ports (`drained`), so their requests there have ended by then. Every
   * such port was bound before the stop began (one bound after is closed at once), so the stop's
   * own drain, with its one deadline, covers them all.
   */
  builtAtStop(drained: Promise<void>, what: { built: RunningAccount[]; previous: RunningAccount[] }): void {
    this.#track(drained.then(() => retireBuilt(what.built, what.previous)));
  }

  /** Resolves once everything retiring now has closed. */
  async settled(): Promise<void> {
    await Promise.all(this.#pending);
  }

  #track(retiring: Promise<void>): void {
    const tracked = retiring.catch((error: unknown) =>
      this.#o.logger.error({ err: error }, 'error while closing what a reload replaced'),
    );
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
