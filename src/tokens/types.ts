/**
 * What the rest of the sidecar sees of the token layer: token-manager.ts and history.ts both use
 * these, and the proxy, admin and commands import them from here, not from the manager.
 */
import type { TokenHttpOptions } from '../flows/http-client.js';
import type { TokenHttpRequest, TokenHttpResponse, TokenRequestKind } from '../flows/types.js';
import type { LifetimeAnomaly } from './lifetime.js';
import { SidecarError } from '../util/errors.js';

/** What caused a token request (metric label `trigger`, docs/contract.md §7). */
export type TokenTrigger = 'startup' | 'schedule' | 'upstream_rejection' | 'admin' | 'retry';
export type TokenOutcome = 'success' | 'rejected' | 'error';
export type SuppressionReason = 'min_interval' | 'backoff';

/** How the manager reports what it does; admin/metrics.ts turns these into Prometheus series. */
export interface TokenEvents {
  tokenRequest(kind: TokenRequestKind, outcome: TokenOutcome, trigger: TokenTrigger, durationSeconds: number): void;
  suppressed(reason: SuppressionReason): void;
  lifetimeAnomaly(reason: LifetimeAnomaly): void;
  clockSkew(seconds: number): void;
  /** A store operation failed (Redis down): the account keeps serving its valid token. */
  storeError(operation: StoreOperation): void;
  /** P3: a refresh token of a shared chain was spent without the store's lock (the last resort before expiry). */
  unlockedRefresh?(): void;
  /** E7: the token endpoint asked for a DPoP nonce and the request was sent again with it. */
  dpopNonceRetry?(): void;
}

export type StoreOperation = 'load' | 'save' | 'lock' | 'replicate';

export type SendTokenRequest = (request: TokenHttpRequest, options: TokenHttpOptions) => Promise<TokenHttpResponse>;

/** Thrown to requests that cannot get a token in time (T7): the proxy answers 503 with Retry-After. */
export class TokenUnavailableError extends SidecarError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('BS_ERR_TOKEN_UNAVAILABLE', message);
  }
}

export interface RefreshRequestResult {
  /** `started` ran a request now; `joined` shares one in flight; `deferred` waits for the guard or backoff. */
  result: 'started' | 'joined' | 'deferred';
  at: number;
  /** Why a request was deferred, when it is not the loop guard (P2: the same credentials were rejected). */
  reason?: string;
}

/** P4: `degraded` is a valid token with something wrong (TokenStatus.warnings says what). */
export type AccountState = 'starting' | 'valid' | 'degraded' | 'refreshing' | 'expired' | 'rejected' | 'stopped';

export interface TokenStatus {
  state: AccountState;
  ready: boolean;
  reason: string | undefined;
  /** P4: why the account's valid token is degraded (empty when nothing is wrong). */
  warnings: string[];
  fingerprint: string | undefined;
  generation: number;
  obtainedAt: number | undefined;
  expiresAt: number | undefined;
  lifetimeMs: number | undefined;
  nextRequestAt: number | undefined;
  nextTrigger: TokenTrigger | undefined;
  lastRequestAt: number | undefined;
  lastError: { at: number; message: string } | undefined;
  consecutiveFailures: number;
  hasRefreshToken: boolean;
  /** Requests parked until a token arrives (T7). */
  waiting: number;
  /** Why the token store cannot be used right now (shared stores), if so. */
  storeProblem: string | undefined;
  /** Revision of the stored state this process holds. */
  revision: number | undefined;
  counts: Record<TokenRequestKind, Record<TokenOutcome, number>>;
}
