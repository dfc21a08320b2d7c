import { parseConfig } from '../../src/config/load.js';
import type { AccountConfig } from '../../src/config/resolve.js';
import { createFlow } from '../../src/flows/index.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { TokenStore } from '../../src/stores/types.js';
import { TokenManager, type TokenManagerOptions } from '../../src/tokens/token-manager.js';
import type { SendTokenRequest, TokenEvents } from '../../src/tokens/types.js';
import type { Logger } from '../../src/util/logger.js';
import { silentLogger } from '../../src/util/logger.js';
import type { FakeClock } from './fake-clock.js';

/** The session dialect with login and refresh: what most token-engine tests drive. */
export const SESSION_AUTH = {
  flow: 'session',
  loginUrl: 'http://token.test/auth/login',
  refreshUrl: 'http://token.test/auth/refresh',
  username: 'u',
  password: 'p',
};

/** Token events that record nothing; `overrides` for the ones a test watches. */
export function quietTokenEvents(overrides: Partial<TokenEvents> = {}): TokenEvents {
  return {
    tokenRequest: () => undefined,
    suppressed: () => undefined,
    lifetimeAnomaly: () => undefined,
    clockSkew: () => undefined,
    storeError: () => undefined,
    ...overrides,
  };
}

/** Account `acct` as configuration resolution makes it, with `auth` (default: SESSION_AUTH) and other account keys (`refresh`, ...). */
export function testAccount(
  auth: Record<string, unknown> = SESSION_AUTH,
  settings: Record<string, unknown> = {},
): AccountConfig {
  const config = parseConfig({ accounts: { acct: { upstream: 'http://api.test', auth, ...settings } } }, { env: {} });
  const account = config.accounts[0];
  if (account === undefined) throw new Error('no account');
  return account;
}

export interface TestManagerOptions {
  clock: FakeClock;
  send: SendTokenRequest;
  account?: AccountConfig;
  store?: TokenStore;
  events?: TokenEvents;
  logger?: Logger;
  random?: () => number;
  /** Secret files the manager watches (P2). */
  secretFiles?: TokenManagerOptions['secretFiles'];
  /** H2: the fingerprint of the account's credentials, as buildTokenSide gives it (none: every record is adopted). */
  credentials?: TokenManagerOptions['credentials'];
  unmarkedRecords?: TokenManagerOptions['unmarkedRecords'];
}

/** A TokenManager for account `acct` on the fake clock; everything not given is quiet or in memory. */
export function testTokenManager(options: TestManagerOptions): TokenManager {
  const account = options.account ?? testAccount();
  return new TokenManager({
    account: 'acct',
    flow: createFlow(account.auth),
    policy: account.refresh,
    store: options.store ?? new MemoryTokenStore({ now: () => options.clock.now() }),
    clock: options.clock,
    events: options.events ?? quietTokenEvents(),
    logger: options.logger ?? silentLogger(),
    send: options.send,
    random: options.random ?? (() => 0.5),
    secretFiles: options.secretFiles,
    credentials: options.credentials,
    unmarkedRecords: options.unmarkedRecords,
  });
}
