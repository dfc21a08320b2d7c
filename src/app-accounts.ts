import type { AccountView } from './admin/status.js';
import type { AccountConfig } from './config/resolve.js';
import type { TokenEgress } from './flows/proxy-agent.js';
import type { TokenFlow } from './flows/types.js';
import type { UpstreamAccount } from './proxy/upstream.js';
import type { TokenManager } from './tokens/token-manager.js';

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
