import type { SidecarMetrics } from './admin/metrics.js';
import type { AccountView } from './admin/status.js';
import { proxyFor } from './config/egress.js';
import { secretFilesOf } from './config/resolve.js';
import { tokenEndpointTls } from './config/tls.js';
import { createFlow } from './flows/index.js';
import { TokenEgress } from './flows/proxy-agent.js';
import type { TokenStore } from './stores/types.js';
import { TokenManager } from './tokens/token-manager.js';
import type { SendTokenRequest } from './tokens/types.js';
import type { Clock } from './util/clock.js';
import type { Logger } from './util/logger.js';
import { reportSecretReads } from './util/secret-file.js';
import type { Tracing } from './util/tracing.js';
import type { AccountConfig } from './config/resolve.js';
import type { TokenFlow } from './flows/types.js';
import type { UpstreamAccount } from './proxy/upstream.js';

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
}

/**
 * An account's token side: its flow, token manager, token-endpoint egress (its own TLS: E2) and
 * the watch on its secret files (R6). A reload keeps it while `auth` and the other token-side
 * settings are unchanged (H2).
 */
export function buildTokenSide(
  account: AccountConfig,
  store: TokenStore,
  context: TokenSideContext,
): Pick<RunningAccount, 'manager' | 'flow' | 'tokenEgress' | 'proxies' | 'status' | 'history' | 'unwatchSecrets'> {
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
  });
  const proxies = {
    upstream: proxyFor(account.egress, account.upstream),
    tokenEndpoint: proxyFor(account.egress, new URL(flow.endpoint('login'))),
  };
  return {
    manager,
    flow,
    tokenEgress,
    proxies,
    status: () => manager.status(),
    history: manager.history,
    unwatchSecrets,
  };
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

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
