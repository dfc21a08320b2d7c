import type { DpopKeyReport } from '../flows/dpop.js';
import type { TokenFlow } from '../flows/types.js';
import type { TokenRequestCount, TokenRequestHistory } from '../tokens/history.js';
import type { AccountState, TokenStatus, TokenTrigger } from '../tokens/types.js';
import { displayUrl } from '../util/display-url.js';
import { describeProxy, type EgressProxy } from '../config/egress.js';

export interface AccountView {
  name: string;
  flow: TokenFlow;
  upstream: URL;
  status(): TokenStatus;
  /** The account's recent token requests (bounded ring). */
  history: TokenRequestHistory;
  /** `refresh.at`: the expected pace of token requests is one per `at` x lifetime. */
  refreshAt: number;
  /** E6: the proxy (or none) for the upstream and for the login endpoint. */
  proxies: { upstream: EgressProxy | undefined; tokenEndpoint: EgressProxy | undefined };
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

const HOUR_MS = 3_600_000;
/** The window in which a refresh loop is judged, and how far above the expected pace it must be. */
export const LOOP_WINDOW_MS = 10 * 60_000;
const LOOP_FACTOR = 3;
/** More than one token request every 10 s, sustained, is a loop whatever the lifetime says (a too-short lifetime is one too). */
const LOOP_ABSOLUTE = LOOP_WINDOW_MS / 10_000;

/** Is this account asking for tokens far more often than its lifetime explains? */
export interface LoopAssessment {
  /** Token requests in the last LOOP_WINDOW_MS. */
  recent: number;
  /** What `at` x lifetime explains in that window (at least 1). */
  expected: number;
  suspected: boolean;
}

/** One account in the /status document: everything an operator needs, and no secret (fingerprints only). */
export interface AccountStatusDocument {
  state: AccountState;
  ready: boolean;
  reason: string | null;
  /** P4: why the state is not `valid`: the reason it is not ready, then every `degraded` reason. */
  reasons: string[];
  dialect: TokenFlow['dialect'];
  upstream: string;
  tokenEndpoint: string;
  /** E1: how the client authenticates at the token endpoint (null for the session dialect). */
  clientAuth: string | null;
  /** E4: the DPoP key (algorithm, file or `generated at start`, RFC 7638 thumbprint `jkt`); null without DPoP. */
  dpop: DpopKeyReport | null;
  /** E6: how each is reached: `direct`, or the proxy's URL (never its credentials) and where it was set. */
  proxy: { upstream: string; tokenEndpoint: string };
  fingerprint: string | null;
  generation: number;
  obtainedAt: string | null;
  expiresAt: string | null;
  expiresInSeconds: number | null;
  lifetimeSeconds: number | null;
  nextRefreshAt: string | null;
  nextTrigger: TokenTrigger | null;
  lastTokenRequestAt: string | null;
  lastError: { at: string | null; message: string } | null;
  consecutiveFailures: number;
  hasRefreshToken: boolean;
  requestsWaitingForToken: number;
  /** Since the process started. */
  tokenRequests: TokenStatus['counts'];
  /** The last hour, by kind, outcome and trigger (combinations that occurred). */
  tokenRequestsLastHour: TokenRequestCount[];
  /** Token requests per minute over the last hour, oldest first (60 numbers). */
  tokenRequestsPerMinute: number[];
  refreshLoop: LoopAssessment;
}

export function accountStatusJson(view: AccountView, now: number): AccountStatusDocument {
  const status = view.status();
  const recent = view.history.since(now - LOOP_WINDOW_MS).length;
  // One request per `at` x lifetime is the expected pace; without a lifetime, nothing is expected.
  const expected =
    status.lifetimeMs === undefined ? 1 : Math.max(1, LOOP_WINDOW_MS / (view.refreshAt * status.lifetimeMs));
  return {
    state: status.state,
    ready: status.ready,
    reason: status.reason ?? null,
    reasons: status.reason === undefined ? status.warnings : [status.reason, ...status.warnings],
    dialect: view.flow.dialect,
    upstream: displayUrl(view.upstream),
    tokenEndpoint: displayUrl(view.flow.endpoint('login')),
    clientAuth: view.flow.clientAuth,
    dpop: view.flow.dpop?.report() ?? null,
    proxy: {
      upstream: describeProxy(view.proxies.upstream),
      tokenEndpoint: describeProxy(view.proxies.tokenEndpoint),
    },
    fingerprint: status.fingerprint ?? null,
    generation: status.generation,
    obtainedAt: iso(status.obtainedAt),
    expiresAt: iso(status.expiresAt),
    expiresInSeconds: status.expiresAt === undefined ? null : Math.round((status.expiresAt - now) / 1000),
    lifetimeSeconds: status.lifetimeMs === undefined ? null : status.lifetimeMs / 1000,
    nextRefreshAt: iso(status.nextRequestAt),
    nextTrigger: status.nextTrigger ?? null,
    lastTokenRequestAt: iso(status.lastRequestAt),
    lastError:
      status.lastError === undefined ? null : { at: iso(status.lastError.at), message: status.lastError.message },
    consecutiveFailures: status.consecutiveFailures,
    hasRefreshToken: status.hasRefreshToken,
    requestsWaitingForToken: status.waiting,
    tokenRequests: status.counts,
    tokenRequestsLastHour: view.history.countsSince(now - HOUR_MS),
    tokenRequestsPerMinute: view.history.perMinute(now, 60),
    refreshLoop: {
      recent,
      expected: Math.round(expected * 10) / 10,
      suspected: recent >= 5 && (recent > LOOP_FACTOR * expected || recent > LOOP_ABSOLUTE),
    },
  };
}
