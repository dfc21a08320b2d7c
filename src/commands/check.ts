import type { DpopKeyReport } from '../flows/dpop.js';
import type { AccountConfig, SidecarConfig } from '../config/resolve.js';
import { credentialsFingerprint } from '../config/credentials-fingerprint.js';
import { tokenEndpointTls } from '../config/tls.js';
import { describeProxy, proxyFor } from '../config/egress.js';
import { TokenEgress } from '../flows/proxy-agent.js';
import { sendTokenRequest } from '../flows/http-client.js';
import { createFlow } from '../flows/index.js';
import type { TokenFlow, TokenRequestKind } from '../flows/types.js';
import { createStore } from '../stores/index.js';
import type { StoredToken, TokenState, TokenStore } from '../stores/types.js';
import { exchangeToken, initialRequest, type ExchangeSuccess } from '../tokens/exchange.js';
import type { LifetimeAnomaly, LifetimeSource, ResolvedLifetime } from '../tokens/lifetime.js';
import type { SendTokenRequest } from '../tokens/types.js';
import { displayUrl } from '../util/display-url.js';
import { formatDuration } from '../util/duration.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';
import { fingerprint } from '../util/secret.js';
import { asError } from '../util/errors.js';

/*
 * `bearer-sidecar check` (docs/contract.md §2, issue 8): one look per account, without disturbing a
 * running sidecar's chain. A file/redis store is only read unless --login; a stored refresh
 * token is never spent; a refresh-only account sends its configured refresh token only with
 * --login and an empty store.
 */

/** What the check did for an account. */
export type CheckMethod = 'token_request' | 'store' | 'none';

/**
 * `ok`: a token was obtained, or a valid one is stored. `rejected` / `error`: the token endpoint
 * said no / failed. `expired`, `empty`: what the store holds is of no use now. `not_checked`:
 * checking would have spent a refresh token (refresh-only account without --login).
 */
export type CheckOutcome = 'ok' | 'rejected' | 'error' | 'expired' | 'empty' | 'not_checked';

export interface AccountCheck {
  account: string;
  dialect: TokenFlow['dialect'];
  tokenEndpoint: string;
  /** E1: how the client authenticates (null for the session dialect). */
  clientAuth: string | null;
  /** E4: the DPoP key (algorithm, file or `generated at start`, thumbprint `jkt`); null without DPoP. */
  dpop: DpopKeyReport | null;
  /** E6: how the token endpoint and the upstream are reached: `direct` or the proxy (no credentials). */
  proxy: { tokenEndpoint: string; upstream: string };
  method: CheckMethod;
  /** The token request sent (token_request only). */
  kind: TokenRequestKind | null;
  outcome: CheckOutcome;
  good: boolean;
  /** Why, in words: the server's reason, the transport error, what the store holds. */
  detail: string;
  httpStatus: number | null;
  durationMs: number | null;
  lifetimeSeconds: number | null;
  lifetimeSource: LifetimeSource | 'store' | null;
  anomalies: LifetimeAnomaly[];
  /** Local-clock expiry (T1): when the request was sent + lifetime. */
  expiresAt: string | null;
  /** The token server's Date header minus local time, in seconds. */
  clockSkewSeconds: number | null;
  fingerprint: string | null;
  hasRefreshToken: boolean | null;
  /** Revision of the stored state (store only). */
  revision: number | null;
  /** What the sidecar (or the operator) would do next. */
  next: string;
}

export interface CheckResult {
  ok: boolean;
  store: SidecarConfig['store']['type'];
  login: boolean;
  checkedAt: string;
  accounts: AccountCheck[];
}

export interface CheckOptions {
  /** Ask the token endpoint even with a file/redis store (never with a stored refresh token). */
  login?: boolean;
  send?: SendTokenRequest;
  now?: () => number;
  /** Defaults to the configured store (closed again by the check). */
  store?: TokenStore;
  logger?: Logger;
}

/** Clock skew above this is worth a word, though expiry does not depend on it (T1). */
const NOTABLE_SKEW_MS = 60_000;

export async function runCheck(config: SidecarConfig, options: CheckOptions = {}): Promise<CheckResult> {
  const now = options.now ?? Date.now;
  const logger = options.logger ?? silentLogger();
  const ownStore = options.store === undefined;
  const store = options.store ?? createStore(config.store, logger);
  const login = options.login ?? false;
  try {
    // An unreachable store is reported per account (each load fails), not as a crash.
    if (store.type !== 'memory') await store.ready?.().catch(() => undefined);
    const accounts: AccountCheck[] = [];
    for (const account of config.accounts)
      accounts.push(await checkAccount(account, { store, login, now, send: options.send ?? sendTokenRequest }));
    return {
      ok: accounts.every((account) => account.good),
      store: config.store.type,
      login,
      checkedAt: new Date(now()).toISOString(),
      accounts,
    };
  } finally {
    if (ownStore) await store.close();
  }
}

interface AccountContext {
  store: TokenStore;
  login: boolean;
  now: () => number;
  send: SendTokenRequest;
}

/** What one step of a check found out: the fields of the account's record it fills in. */
type Finding = Partial<AccountCheck>;

const FIX_SECRET = 'fix the secret (file path and permissions, or run bearer-sidecar authorize), then check again';
const RETRY_UNREACHABLE =
  'the sidecar would retry with backoff (1s to 5m): check the token URL, DNS, firewall and TLS (upstreamTls.caFile)';
const RETRY_BAD_ANSWER =
  'the sidecar would retry with backoff (1s to 5m): is the URL the token endpoint? see the README troubleshooting table';
const FIX_TOKEN_URL =
  'fix the token URL (tokenUrl, loginUrl, refreshUrl; --token-url in quick mode): the server has no token endpoint there; the sidecar would retry once a minute';
const FIX_CREDENTIALS =
  'fix the credentials (username, password / client secret, accountId, clientAuth); the sidecar would retry once a minute';
const REFRESH_TOKEN_DEAD =
  'the refresh token is spent or revoked: run bearer-sidecar authorize, or put a new one in refreshTokenFile';

/** One account's record, built once (blank) and filled in with what the check found. */
async function checkAccount(account: AccountConfig, context: AccountContext): Promise<AccountCheck> {
  const flow = createFlow(account.auth);
  await flow.dpop?.ready;
  const check = blankCheck(account, flow);
  return Object.assign(check, await findOut(account, flow, context));
}

/** A check reads the store, or sends one token request, or (refresh-only without --login) does nothing. */
async function findOut(account: AccountConfig, flow: TokenFlow, context: AccountContext): Promise<Finding> {
  const persistent = context.store.type !== 'memory';
  const stored = persistent ? await loadStored(context.store, account.name) : undefined;
  if (stored instanceof Error) {
    return {
      method: 'store',
      outcome: 'error',
      detail: `${context.store.type} store: ${stored.message}`,
      next: 'fix the store (store.url / store.path), then check again',
    };
  }
  // A stored chain belongs to the running sidecar: a check reads it, and never spends it.
  if (persistent && (!context.login || (!flow.canLogin && stored?.state.refreshToken !== undefined))) {
    return { method: 'store', ...fromStore(account, stored, context, flow) };
  }
  if (!flow.canLogin && !context.login) {
    return {
      method: 'none',
      outcome: 'not_checked',
      detail: 'grant refresh_token: a check would spend the refresh token',
      next: 'pass --login to spend the configured refresh token (the new one is saved to a file/redis store), or look at a running sidecar: /status',
    };
  }
  return requestToken(account, flow, context);
}

function blankCheck(account: AccountConfig, flow: TokenFlow): AccountCheck {
  return {
    account: account.name,
    dialect: flow.dialect,
    tokenEndpoint: displayUrl(flow.endpoint('login')),
    clientAuth: flow.clientAuth,
    dpop: flow.dpop?.report() ?? null,
    proxy: {
      tokenEndpoint: describeProxy(proxyFor(account.egress, new URL(flow.endpoint('login')))),
      upstream: describeProxy(proxyFor(account.egress, account.upstream)),
    },
    method: 'none',
    kind: null,
    outcome: 'not_checked',
    good: false,
    detail: '',
    httpStatus: null,
    durationMs: null,
    lifetimeSeconds: null,
    lifetimeSource: null,
    anomalies: [],
    expiresAt: null,
    clockSkewSeconds: null,
    fingerprint: null,
    hasRefreshToken: null,
    revision: null,
    next: '',
  };
}

async function loadStored(store: TokenStore, account: string): Promise<StoredToken | undefined | Error> {
  try {
    return await store.load(account);
  } catch (error) {
    return asError(error);
  }
}

/** T9: what the store holds for the account, and what a starting sidecar would do with it. */
function fromStore(
  account: AccountConfig,
  stored: StoredToken | undefined,
  context: AccountContext,
  flow: TokenFlow,
): Finding {
  if (stored === undefined) {
    return {
      outcome: 'empty',
      detail: 'nothing stored for this account yet',
      next: flow.canLogin
        ? 'start the sidecar (it logs in), or run check --login to test the credentials'
        : `run bearer-sidecar authorize ${account.name}, or set refreshTokenFile`,
    };
  }
  const { state, revision } = stored;
  const now = context.now();
  const dueAt = state.obtainedAt + account.refresh.at * state.lifetimeMs;
  const found: Finding = {
    lifetimeSeconds: state.lifetimeMs / 1000,
    lifetimeSource: 'store',
    expiresAt: new Date(state.expiresAt).toISOString(),
    fingerprint: fingerprint(state.accessToken.reveal()),
    hasRefreshToken: state.refreshToken !== undefined,
    revision,
  };
  if (now < state.expiresAt) {
    return {
      ...found,
      outcome: 'ok',
      good: true,
      detail: `a valid token is stored (revision ${revision}, obtained ${new Date(state.obtainedAt).toISOString()})`,
      next: `${state.refreshToken === undefined ? 'log in' : 'refresh with the stored refresh token'} ${relative(dueAt, now)} (${account.refresh.at} x lifetime)`,
    };
  }
  const renewal =
    state.refreshToken !== undefined
      ? 'refresh with the stored refresh token'
      : flow.canLogin
        ? 'log in'
        : 'nothing (no refresh token, no credentials)';
  return {
    ...found,
    outcome: 'expired',
    detail: `the stored token expired ${relative(state.expiresAt, now)} (revision ${revision}): is a sidecar running?`,
    next: `a starting sidecar would ${renewal}; look at a running one's /readyz and /status${flow.canLogin ? ', or run check --login to test the credentials' : ''}`,
  };
}

/** The account's first token request, through the same exchange the sidecar uses; what came back. */
async function requestToken(account: AccountConfig, flow: TokenFlow, context: AccountContext): Promise<Finding> {
  const tokenTls = tokenEndpointTls(account);
  const egress = new TokenEgress(account.egress, { tls: tokenTls, connectTimeoutMs: account.timeouts.connectMs });
  const result = await exchangeToken(
    {
      build: () => initialRequest(flow),
      send: (request) => context.send(request, { timeoutMs: account.refresh.timeoutMs, ...tokenTls, egress }),
      parse: (response, secrets) => flow.parseResponse(response, secrets),
      rotatesRefreshTokens: flow.rotatesRefreshTokens,
    },
    { clock: { now: context.now }, policy: account.refresh },
  ).finally(() => egress.close());
  if (result.outcome === 'unbuildable' || result.outcome === 'already_spent') {
    return {
      method: 'none',
      outcome: 'rejected',
      detail: result.outcome === 'unbuildable' ? result.error.message : result.reason,
      next: FIX_SECRET,
    };
  }
  const sent: Finding = {
    method: 'token_request',
    kind: result.kind,
    httpStatus: result.httpStatus ?? null,
    durationMs: Math.round(result.durationMs),
  };
  if (result.outcome === 'error' && result.thrown !== undefined)
    return { ...sent, outcome: 'error', detail: result.thrown.message, next: RETRY_UNREACHABLE };
  if (result.outcome === 'error') return { ...sent, outcome: 'error', detail: result.reason, next: RETRY_BAD_ANSWER };
  if (result.outcome === 'rejected')
    return {
      ...sent,
      outcome: 'rejected',
      detail: result.reason,
      next: result.reason.includes('check the token URL')
        ? FIX_TOKEN_URL
        : result.kind === 'login'
          ? FIX_CREDENTIALS
          : REFRESH_TOKEN_DEAD,
    };
  const found = { ...sent, ...describeNewToken(account, flow, result) };
  // A refresh-only account spent its configured refresh token: keep the chain going if we can.
  if (result.kind === 'refresh' && result.spentRefreshToken !== undefined && result.issued.refreshToken !== undefined) {
    Object.assign(found, await keepRotatedChain(account, found.detail, context, result.state));
  }
  return found;
}

/** T1: the token obtained: its lifetime on the local clock, the server's skew, and when the sidecar would renew it. */
function describeNewToken(
  account: AccountConfig,
  flow: TokenFlow,
  result: ExchangeSuccess,
): Finding & Pick<AccountCheck, 'detail'> {
  const { lifetime, issued, sentAt } = result;
  const dueAt = sentAt + account.refresh.at * lifetime.lifetimeMs;
  const renewal =
    issued.refreshToken !== undefined && flow.canRefresh
      ? 'refresh with the issued refresh token'
      : flow.canLogin
        ? 'log in again'
        : 'refresh again with the configured refresh token';
  return {
    outcome: 'ok',
    good: true,
    detail: `HTTP ${result.httpStatus}${lifetime.source === 'lifetime' ? '' : `; lifetime from ${lifetime.source}`}`,
    lifetimeSeconds: lifetime.lifetimeMs / 1000,
    lifetimeSource: lifetime.source,
    anomalies: lifetime.anomalies,
    expiresAt: new Date(result.state.expiresAt).toISOString(),
    clockSkewSeconds: lifetime.skewMs === undefined ? null : Math.round(lifetime.skewMs / 100) / 10,
    fingerprint: issued.accessToken.fingerprint(),
    hasRefreshToken: issued.refreshToken !== undefined,
    next: [
      `the sidecar would ${renewal} ${relative(dueAt, sentAt)} (${account.refresh.at} x lifetime)`,
      ...lifetimeNotes(lifetime),
    ].join('; '),
  };
}

/** What is worth a word about a lifetime: a skewed server clock, anomalies the configuration can fix. */
function lifetimeNotes(lifetime: ResolvedLifetime): string[] {
  const notes: string[] = [];
  if (lifetime.skewMs !== undefined && Math.abs(lifetime.skewMs) >= NOTABLE_SKEW_MS) {
    notes.push(
      `the server clock is ${formatDuration(Math.abs(lifetime.skewMs))} ${lifetime.skewMs > 0 ? 'ahead' : 'behind'}: harmless for expiry (computed on the local clock from the lifetime), but check NTP`,
    );
  }
  if (lifetime.anomalies.includes('too_short'))
    notes.push('the lifetime is shorter than refresh.minInterval: lower refresh.minInterval');
  if (lifetime.anomalies.includes('too_long')) notes.push('the lifetime was cut to refresh.maxLifetime');
  return notes;
}

/** T3: the server rotated the configured refresh token: store the new chain where the sidecar picks it up, or say it is lost. */
async function keepRotatedChain(
  account: AccountConfig,
  detail: string,
  context: AccountContext,
  state: TokenState,
): Promise<Finding> {
  if (context.store.type === 'memory') {
    return {
      good: false,
      detail: `${detail}; the server rotated the refresh token, so the configured one is now spent`,
      next: `run bearer-sidecar authorize ${account.name} --out FILE for a new chain, or use a file/redis store so check --login keeps it`,
    };
  }
  // H2: marked with the credentials' fingerprint, so only replicas running these credentials adopt it.
  const marked = { ...state, credentials: await credentialsFingerprint(account.auth) };
  const saved = await context.store.save(account.name, marked, null).catch((error: unknown) => asError(error));
  if (saved instanceof Error || !saved.saved) {
    return {
      good: false,
      detail: `${detail}; the server rotated the refresh token and the new one could not be stored${saved instanceof Error ? `: ${saved.message}` : ' (another process stored a chain meanwhile)'}`,
      next: `run bearer-sidecar authorize ${account.name} for a new chain`,
    };
  }
  return {
    revision: saved.record.revision,
    detail: `${detail}; the rotated refresh token was stored (revision ${saved.record.revision}): the sidecar goes on from it`,
  };
}

function relative(at: number, now: number): string {
  const ms = at - now;
  if (Math.abs(ms) < 500) return 'now';
  return ms > 0
    ? `in ${formatDuration(ms)} (${new Date(at).toISOString()})`
    : `${formatDuration(-ms)} ago (${new Date(at).toISOString()})`;
}
