import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TokenRequestKind } from '../flows/types.js';
import type { ProxyMetrics } from '../proxy/types.js';
import { ACCOUNT_STATES } from '../tokens/account-state.js';
import type { LifetimeAnomaly } from '../tokens/lifetime.js';
import type { SuppressionReason, TokenEvents, TokenOutcome, TokenStatus, TokenTrigger } from '../tokens/types.js';
import { RequestTally } from './request-tally.js';

/** Metric names are part of the spec (docs/contract.md §7): dashboards and alerts use them. */
export const METRIC_NAMES = {
  tokenRequests: 'bearer_sidecar_token_requests_total',
  tokenRequestDuration: 'bearer_sidecar_token_request_duration_seconds',
  tokenExpiry: 'bearer_sidecar_token_expiry_timestamp_seconds',
  tokenLifetime: 'bearer_sidecar_token_lifetime_seconds',
  tokenValid: 'bearer_sidecar_token_valid',
  tokenRequestsSuppressed: 'bearer_sidecar_token_requests_suppressed_total',
  proxyRequests: 'bearer_sidecar_proxy_requests_total',
  proxyRequestDuration: 'bearer_sidecar_proxy_request_duration_seconds',
  upstreamRejections: 'bearer_sidecar_upstream_rejections_total',
  replays: 'bearer_sidecar_replays_total',
  clockSkew: 'bearer_sidecar_clock_skew_seconds',
  lifetimeAnomalies: 'bearer_sidecar_token_lifetime_anomalies_total',
  // Beyond the spec's first table (additive, docs/contract.md §7): the shared store's health (T10).
  storeErrors: 'bearer_sidecar_store_errors_total',
  storeUp: 'bearer_sidecar_store_up',
  // R6: secret files that failed or read empty at a later login (the last good value was used).
  secretReadErrors: 'bearer_sidecar_secret_read_errors_total',
  // R9: client connections closed at once because limits.maxConnections were open.
  connectionsRefused: 'bearer_sidecar_client_connections_refused_total',
  // P3: refresh tokens of a shared chain spent without the store's lock (the last resort before expiry).
  storeUnlockedRefreshes: 'bearer_sidecar_store_unlocked_refreshes_total',
  // P4: 1 for the account's current state, 0 for the others.
  accountState: 'bearer_sidecar_account_state',
  // E7: requests sent again with a DPoP nonce the token endpoint or the upstream asked for.
  dpopNonceRetries: 'bearer_sidecar_dpop_nonce_retries_total',
  // H2: configuration reloads, applied or rejected.
  configReloads: 'bearer_sidecar_config_reloads_total',
} as const;

type MetricKey = keyof typeof METRIC_NAMES;

/** The help text of each counter and histogram this class registers (the status gauges carry their own). */
const METRIC_HELP = {
  tokenRequests: 'HTTP requests sent to token endpoints, each counted once.',
  tokenRequestDuration: 'Duration of token endpoint requests.',
  tokenRequestsSuppressed: 'Token requests held back by the loop guard (min_interval) or a backoff.',
  proxyRequests: 'Requests answered on the data plane, by status code.',
  proxyRequestDuration: 'Time from request arrival to the end of the response.',
  upstreamRejections: 'Upstream answers with a status in refresh.retryOn (token no longer good).',
  replays: 'Requests replayed with a new token after an upstream rejection.',
  lifetimeAnomalies: 'Token lifetimes that were missing, invalid, non-positive, too short or too long.',
  storeErrors:
    'Token store operations that failed (load, save, lock), or a rotated refresh token no replica acknowledged in time (replicate); the valid token keeps being served.',
  secretReadErrors:
    'Secret file reads that failed or found the file empty, and bad versions of client certificate files; the last good value was used instead.',
  clockSkew: "Token server's Date header minus local time, at the last token response.",
  connectionsRefused: 'Data-plane client connections closed at once because limits.maxConnections were open.',
  storeUnlockedRefreshes:
    "Refreshes sent without the shared store's lock (store unreachable, no credentials, token about to expire): replicas may race.",
  dpopNonceRetries: 'Requests sent again at once with the DPoP nonce the token endpoint or the upstream asked for.',
  configReloads: 'Configuration reloads (SIGHUP or a changed config file): applied, or rejected with the old one kept.',
} satisfies Partial<Record<MetricKey, string>>;
type HelpedMetric = keyof typeof METRIC_HELP;

/** What the gauges read at scrape time, per account. */
export interface TokenStatusSource {
  accountNames(): readonly string[];
  tokenStatus(account: string): TokenStatus | undefined;
  now(): number;
}

/** Every bearer-sidecar metric, on an injected Registry (never the global one). */
export class SidecarMetrics {
  readonly registry: Registry;
  readonly #tokenRequests: Counter<'account' | 'kind' | 'outcome' | 'trigger'>;
  readonly #tokenDuration: Histogram<'account' | 'kind'>;
  readonly #suppressed: Counter<'account' | 'reason'>;
  /** Requests by code and their duration: counted without prom-client on the hot path (request-tally.ts). */
  readonly #proxyRequests: RequestTally;
  readonly #upstreamRejections: Counter<'account' | 'code'>;
  readonly #replays: Counter<'account' | 'outcome'>;
  readonly #skew: Gauge<'account'>;
  readonly #anomalies: Counter<'account' | 'reason'>;
  readonly #storeErrors: Counter<'account' | 'operation'>;
  readonly #secretReadErrors: Counter<'account'>;
  readonly #connectionsRefused: Counter;
  readonly #unlockedRefreshes: Counter<'account'>;
  readonly #dpopNonceRetries: Counter<'account' | 'where'>;
  readonly #configReloads: Counter<'outcome'>;

  constructor(registry: Registry, source: TokenStatusSource, options: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    const registers = [registry];
    // One line per metric: its name and help text come from METRIC_NAMES and METRIC_HELP.
    const counter = <L extends string>(key: HelpedMetric, labelNames: L[]) =>
      new Counter({ name: METRIC_NAMES[key], help: METRIC_HELP[key], labelNames, registers });
    const histogram = <L extends string>(key: HelpedMetric, labelNames: L[], buckets: number[]) =>
      new Histogram({ name: METRIC_NAMES[key], help: METRIC_HELP[key], labelNames, buckets, registers });
    this.#tokenRequests = counter('tokenRequests', ['account', 'kind', 'outcome', 'trigger']);
    this.#tokenDuration = histogram(
      'tokenRequestDuration',
      ['account', 'kind'],
      [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    );
    this.#suppressed = counter('tokenRequestsSuppressed', ['account', 'reason']);
    const requests = { name: METRIC_NAMES.proxyRequests, help: METRIC_HELP.proxyRequests };
    this.#proxyRequests = new RequestTally(registry, requests, {
      name: METRIC_NAMES.proxyRequestDuration,
      help: METRIC_HELP.proxyRequestDuration,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.#upstreamRejections = counter('upstreamRejections', ['account', 'code']);
    this.#replays = counter('replays', ['account', 'outcome']);
    this.#anomalies = counter('lifetimeAnomalies', ['account', 'reason']);
    this.#storeErrors = counter('storeErrors', ['account', 'operation']);
    this.#secretReadErrors = counter('secretReadErrors', ['account']);
    this.#connectionsRefused = counter('connectionsRefused', []);
    this.#unlockedRefreshes = counter('storeUnlockedRefreshes', ['account']);
    this.#dpopNonceRetries = counter('dpopNonceRetries', ['account', 'where']);
    this.#configReloads = counter('configReloads', ['outcome']);
    // Both series exist from the start, so an alert on an increase of `rejected` sees the first one.
    for (const outcome of ['applied', 'rejected']) this.#configReloads.inc({ outcome }, 0);
    this.#skew = new Gauge({
      name: METRIC_NAMES.clockSkew,
      help: METRIC_HELP.clockSkew,
      labelNames: ['account'],
      registers,
    });
    this.#registerStatusGauges(source, registers);
  }

  /** Token gauges are computed from the managers at scrape time, not updated on timers. */
  #registerStatusGauges(source: TokenStatusSource, registers: Registry[]): void {
    const perAccount = (read: (status: TokenStatus, now: number) => number | undefined) =>
      function collect(this: Gauge<'account'>) {
        this.reset();
        const now = source.now();
        for (const account of source.accountNames()) {
          const status = source.tokenStatus(account);
          const value = status === undefined ? undefined : read(status, now);
          if (value !== undefined) this.set({ account }, value);
        }
      };
    new Gauge({
      name: METRIC_NAMES.tokenExpiry,
      help: 'When the current token expires (local clock), in seconds since the epoch.',
      labelNames: ['account'],
      registers,
      collect: perAccount((status) => (status.expiresAt === undefined ? undefined : status.expiresAt / 1000)),
    });
    new Gauge({
      name: METRIC_NAMES.tokenLifetime,
      help: 'Lifetime of the current token, in seconds.',
      labelNames: ['account'],
      registers,
      collect: perAccount((status) => (status.lifetimeMs === undefined ? undefined : status.lifetimeMs / 1000)),
    });
    new Gauge({
      name: METRIC_NAMES.tokenValid,
      help: '1 while the account holds a token that has not expired.',
      labelNames: ['account'],
      registers,
      collect: perAccount((status, now) => (status.expiresAt !== undefined && now < status.expiresAt ? 1 : 0)),
    });
    new Gauge({
      name: METRIC_NAMES.accountState,
      help: 'Account state: 1 for the current one (starting, valid, degraded, refreshing, expired, rejected, stopped).',
      labelNames: ['account', 'state'],
      registers,
      collect(this: Gauge<'account' | 'state'>) {
        this.reset();
        for (const account of source.accountNames()) {
          const current = source.tokenStatus(account)?.state;
          if (current === undefined) continue;
          for (const state of ACCOUNT_STATES) this.set({ account, state }, state === current ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: METRIC_NAMES.storeUp,
      help: '1 while the token store answered the last operation of the account.',
      labelNames: ['account'],
      registers,
      collect: perAccount((status) => (status.storeProblem === undefined ? 1 : 0)),
    });
  }

  tokenEvents(account: string): TokenEvents {
    this.#unlockedRefreshes.inc({ account }, 0); // the series exists (0) from the start
    return {
      tokenRequest: (kind: TokenRequestKind, outcome: TokenOutcome, trigger: TokenTrigger, durationSeconds: number) => {
        this.#tokenRequests.inc({ account, kind, outcome, trigger });
        this.#tokenDuration.observe({ account, kind }, durationSeconds);
      },
      suppressed: (reason: SuppressionReason) => this.#suppressed.inc({ account, reason }),
      lifetimeAnomaly: (reason: LifetimeAnomaly) => this.#anomalies.inc({ account, reason }),
      clockSkew: (seconds: number) => this.#skew.set({ account }, seconds),
      storeError: (operation) => this.#storeErrors.inc({ account, operation }),
      unlockedRefresh: () => this.#unlockedRefreshes.inc({ account }),
      dpopNonceRetry: () => this.#dpopNonceRetries.inc({ account, where: 'token' }),
    };
  }

  /** R6: counts one failed secret file read of `account`; the series exists (0) from the start. */
  secretReadErrors(account: string): () => void {
    const counter = this.#secretReadErrors.labels(account);
    counter.inc(0);
    return () => counter.inc();
  }

  /** R9: counts one client connection refused past `limits.maxConnections`. */
  /** H2: one reload, `applied` or `rejected`. */
  configReload(outcome: 'applied' | 'rejected'): void {
    this.#configReloads.inc({ outcome });
  }

  connectionRefused(): void {
    this.#connectionsRefused.inc();
  }

  proxyMetrics(account: string): ProxyMetrics {
    const tally = this.#proxyRequests.account(account);
    return {
      observe: (code, durationSeconds) => tally.observe(code, durationSeconds),
      upstreamRejection: (code) => this.#upstreamRejections.inc({ account, code: String(code) }),
      replay: (outcome) => this.#replays.inc({ account, outcome }),
      dpopNonceRetry: () => this.#dpopNonceRetries.inc({ account, where: 'upstream' }),
    };
  }

  /** Requests refused before an account was chosen (403, 404, 400) count under account "". */
  unroutedMetrics(): ProxyMetrics {
    return this.proxyMetrics('');
  }
}
