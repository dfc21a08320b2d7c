import { createServer, type Server } from 'node:http';
import { Registry } from 'prom-client';
import { AdminAccess, adminExposureWarning } from './admin/access.js';
import { createAdminApp } from './admin/server.js';
import { SidecarMetrics } from './admin/metrics.js';
import type { AccountView } from './admin/status.js';
import { secretFilesOf, type AccountConfig, type SidecarConfig } from './config/resolve.js';
import { tokenEndpointTls, upstreamTls, type TlsOptions } from './config/tls.js';
import { sendTokenRequest } from './flows/http-client.js';
import { createFlow } from './flows/index.js';
import type { TokenFlow } from './flows/types.js';
import { ClientConnections, dataServerOptions } from './proxy/client-limits.js';
import { ConnectionSlots } from './proxy/connection-slots.js';
import { errorBody } from './proxy/errors.js';
import { DataPlane, hasRequestInFlight } from './proxy/forward.js';
import { HostOriginRules } from './proxy/host-origin.js';
import { InboundPolicy } from './proxy/inbound.js';
import { TrustedProxies } from './proxy/trusted-proxies.js';
import { Router } from './proxy/route.js';
import { ReplayBudget } from './proxy/replay-budget.js';
import { createUpstreamPool, sendWithUndici } from './proxy/transport.js';
import { TokenEgress } from './flows/proxy-agent.js';
import { proxyFor } from './config/egress.js';
import { TokenInjector } from './proxy/bearer.js';
import type { UpstreamAccount } from './proxy/upstream.js';
import { createStore } from './stores/index.js';
import type { TokenStore } from './stores/types.js';
import { TokenManager } from './tokens/token-manager.js';
import type { SendTokenRequest } from './tokens/types.js';
import { systemClock, type Clock } from './util/clock.js';
import { closeServer, listen, serverUrl } from './util/http-server.js';
import { silentLogger, type Logger } from './util/logger.js';
import { reportSecretReads } from './util/secret-file.js';

/** What can be swapped in tests: time, randomness, the token transport, the registry, the log. */
export interface SidecarDependencies {
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  store?: TokenStore;
  send?: SendTokenRequest;
  random?: () => number;
  /** prom-client's process/Node.js metrics (off in tests that create many sidecars). */
  defaultMetrics?: boolean;
}

interface RunningAccount extends UpstreamAccount, AccountView {
  flow: TokenFlow;
  status: TokenManager['status'];
  /** E6: the token endpoints' proxy agents (closed at stop). */
  tokenEgress: TokenEgress;
}

/** E6: the account's upstream pool (direct or through its proxy), which proxy each target uses, the token endpoints' agents. */
function egressOf(
  account: AccountConfig,
  flow: TokenFlow,
  tls: { upstream: TlsOptions; tokenEndpoint: TlsOptions },
): Pick<RunningAccount, 'pool' | 'proxy' | 'proxies' | 'tokenEgress'> {
  const proxy = proxyFor(account.egress, account.upstream);
  const { upstream, timeouts, connections } = account;
  return {
    pool: createUpstreamPool({ upstream, tls: tls.upstream, timeouts, connections }, proxy),
    proxy,
    proxies: { upstream: proxy, tokenEndpoint: proxyFor(account.egress, new URL(flow.endpoint('login'))) },
    // The token endpoint's own TLS (its client certificate, never the upstream's: E2).
    tokenEgress: new TokenEgress(account.egress, { tls: tls.tokenEndpoint, connectTimeoutMs: timeouts.connectMs }),
  };
}

/** The whole product in one object: config in, servers and token managers out. */
export class Sidecar {
  readonly config: SidecarConfig;
  readonly metrics: SidecarMetrics;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #store: TokenStore;
  readonly #accounts: RunningAccount[];
  readonly #dataPlane: DataPlane;
  readonly #servers: Array<{ server: Server; role: string }> = [];
  /** Open data-plane client connections (R9: at most limits.maxConnections); shutdown closes the idle ones at once. */
  readonly #clients: ClientConnections;
  /** Removes the R6 listeners from the secret files (the config, and its files, may outlive this sidecar). */
  readonly #unwatchSecrets: Array<() => void> = [];
  #adminServer: Server | undefined;
  #accepting = false;
  /** R5: stop() may come while start() is still running (a signal during start-up). */
  #stopping = false;
  #starting: Promise<void> | undefined;
  #requestStop: () => void = () => undefined;
  readonly #stopRequested = new Promise<void>((resolve) => (this.#requestStop = resolve));

  constructor(config: SidecarConfig, deps: SidecarDependencies = {}) {
    this.config = config;
    this.#clock = deps.clock ?? systemClock;
    this.#logger = deps.logger ?? silentLogger();
    this.#store = deps.store ?? createStore(config.store, this.#logger);
    const registry = deps.registry ?? new Registry();
    this.metrics = new SidecarMetrics(
      registry,
      {
        accountNames: () => this.#accounts.map((account) => account.name),
        tokenStatus: (name) => this.manager(name)?.status(),
        now: () => this.#clock.now(),
      },
      { defaultMetrics: deps.defaultMetrics ?? true },
    );
    this.#clients = new ClientConnections({
      max: config.limits.maxConnections,
      clock: this.#clock,
      logger: this.#logger,
      countRefusal: () => this.metrics.connectionRefused(),
    });
    this.#accounts = config.accounts.map((account) => this.#buildAccount(account, deps));
    this.#dataPlane = new DataPlane({
      router: new Router(this.#accounts),
      inbound: new InboundPolicy(config.inbound.allow, config.inbound.apiKeys),
      hostOrigin: dataPlaneHostOrigin(config),
      unrouted: this.metrics.unroutedMetrics(),
      logger: this.#logger,
      clientIdleTimeoutMs: config.clientIdleTimeoutMs,
      unixSocket: 'path' in config.listen,
      transport: sendWithUndici,
      replayBudget: new ReplayBudget(config.limits.replayBudgetBytes),
      clock: this.#clock,
      trustedProxies: new TrustedProxies(config.inbound.trustedProxies),
    });
  }

  #buildAccount(account: AccountConfig, deps: SidecarDependencies): RunningAccount {
    const flow = createFlow(account.auth);
    const tls = upstreamTls(account);
    if (account.tls.insecureSkipVerify) {
      this.#logger.warn(
        { account: account.name },
        'upstreamTls.insecureSkipVerify is ON: upstream and token server certificates are NOT verified',
      );
    }
    const countFailure = this.metrics.secretReadErrors(account.name);
    const secretFiles = secretFilesOf(account.auth);
    const tokenTls = tokenEndpointTls(account);
    // E2: a bad client-certificate rotation is reported as a secret file's failed read is.
    const certificates = [tls.clientCertificate, tokenTls.clientCertificate].filter((each) => each !== undefined);
    for (const file of [...secretFiles, ...certificates]) {
      this.#unwatchSecrets.push(
        reportSecretReads(file, { logger: this.#logger.child({ account: account.name }), countFailure }),
      );
    }
    const egress = egressOf(account, flow, { upstream: tls, tokenEndpoint: tokenTls });
    const manager = new TokenManager({
      account: account.name,
      flow,
      policy: account.refresh,
      store: this.#store,
      clock: this.#clock,
      events: this.metrics.tokenEvents(account.name),
      logger: this.#logger,
      send: deps.send ?? sendTokenRequest,
      tls: { ...tokenTls, egress: egress.tokenEgress },
      random: deps.random,
      secretFiles,
    });
    return {
      name: account.name,
      isDefault: account.isDefault,
      route: account.route,
      upstream: account.upstream,
      basePath: account.upstream.pathname,
      manager,
      metrics: this.metrics.proxyMetrics(account.name),
      ...egress,
      slots: new ConnectionSlots({
        capacity: account.connections,
        queueMs: account.timeouts.queueMs,
        clock: this.#clock,
      }),
      retryOn: new Set(account.refresh.retryOn),
      replayMaxBody: account.refresh.replayMaxBody,
      timeouts: account.timeouts,
      tls,
      inject: new TokenInjector(account.inject),
      flow,
      status: () => manager.status(),
      history: manager.history,
      refreshAt: account.refresh.at,
    };
  }

  manager(name: string): TokenManager | undefined {
    return this.#accounts.find((account) => account.name === name)?.manager;
  }

  /**
   * Binds every listener, then asks each account for its first token (trigger `startup`).
   * When stop() is called meanwhile, start-up ends early (resolves) and stop() takes over.
   */
  start(): Promise<void> {
    this.#starting ??= this.#startUp();
    return this.#starting;
  }

  async #startUp(): Promise<void> {
    if (this.#stopping) return;
    const listenHost = 'host' in this.config.listen ? this.config.listen.host : '127.0.0.1';
    await this.#listenData(undefined, this.config.listen, 'data plane');
    for (const account of this.#accounts) {
      if (this.#stopping) return;
      if (account.route.port !== undefined)
        await this.#listenData(account, { host: listenHost, port: account.route.port }, `account ${account.name}`);
    }
    if (this.#stopping) return;
    const admin = createAdminApp({
      registry: this.metrics.registry,
      accounts: this.#accounts,
      now: () => this.#clock.now(),
      accepting: () => this.#accepting,
      storeType: this.#store.type,
      access: new AdminAccess({ ...this.config.admin, hosts: this.config.inbound.hosts }),
    });
    this.#adminServer = createServer(admin);
    await listen(this.#adminServer, this.config.admin);
    if (this.#stopping) return;
    const exposure = adminExposureWarning(this.config.admin);
    if (exposure !== undefined) this.#logger.warn({ admin: this.adminUrl() }, exposure);
    this.#accepting = true;
    this.#logger.info(
      { data: this.dataUrl(), admin: this.adminUrl(), accounts: this.#accounts.map((a) => a.name) },
      'bearer-sidecar listening',
    );
    // Replicas must see the shared store before their first token request, or each would log in.
    await this.#unlessStopped(
      this.#store.ready?.().catch((error: unknown) => {
        this.#logger.error(
          { store: this.#store.type, err: error },
          'token store not reachable at start; going on without it',
        );
      }),
    );
    if (this.#stopping) return;
    await this.#unlessStopped(Promise.all(this.#accounts.map((account) => account.manager.start())));
  }

  /** Waits for a start-up step that may be slow (the store), or only until stop() is called. */
  async #unlessStopped(step: Promise<unknown> | undefined): Promise<void> {
    await Promise.race([step, this.#stopRequested]);
  }

  async #listenData(
    account: RunningAccount | undefined,
    address: SidecarConfig['listen'],
    role: string,
  ): Promise<void> {
    const server = createServer(dataServerOptions(this.config.limits), (req, res) =>
      this.#dataPlane.handleRequest(req, res, account),
    );
    server.on('connection', this.#clients.accept);
    server.on('connect', (req, socket) => this.#dataPlane.handleConnect(req, socket));
    server.on('upgrade', (req, socket, head) => this.#dataPlane.handleUpgrade(req, socket, head, account));
    server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
      // Requests Node's parser refuses still get the JSON error of F5.
      if (!socket.writable) {
        socket.destroy();
        return;
      }
      const body = errorBody(
        'bad_request',
        error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? `the request head was not complete within ${this.config.limits.headersTimeoutMs}ms (limits.headersTimeout)`
          : `malformed HTTP request (${error.code ?? 'parse error'})`,
      );
      // Closed both ways once written: a client that keeps sending (slow-loris) keeps no socket.
      socket.end(
        `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        () => socket.destroy(),
      );
    });
    await listen(server, address);
    this.#servers.push({ server, role });
  }

  /** Stops accepting, lets in-flight requests finish (up to shutdownTimeout), stops the refreshers. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#requestStop();
    this.#accepting = false;
    // A start-up in progress ends at its next step; what it bound by then is closed below.
    await this.#starting?.catch(() => undefined);
    // Node's closeIdleConnections() skips connections that never sent a request (clients pre-open them).
    const closeIdle = () => {
      for (const socket of this.#clients.sockets()) if (!hasRequestInFlight(socket)) socket.destroy();
    };
    this.#dataPlane.startDraining(closeIdle);
    const drained = Promise.all(this.#servers.map(({ server }) => closeServer(server)));
    closeIdle();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const { server } of this.#servers) server.closeAllConnections();
        resolve();
      }, this.config.shutdownTimeoutMs);
    });
    await Promise.race([drained, deadline]);
    clearTimeout(timer);
    await Promise.all(this.#accounts.map((account) => account.manager.stop()));
    for (const account of this.#accounts) {
      await account.pool.destroy();
      await account.tokenEgress.close();
    }
    this.#dataPlane.close();
    if (this.#adminServer !== undefined) {
      await closeServer(this.#adminServer, { force: true });
    }
    await this.#store.close();
    for (const unwatch of this.#unwatchSecrets.splice(0)) unwatch();
  }

  /** Resolves when no account has a token request in flight (tests drive the fake clock with it). */
  async settled(): Promise<void> {
    await Promise.all(this.#accounts.map((account) => account.manager.settled()));
  }

  dataUrl(): string {
    return serverUrl(this.#servers[0]?.server);
  }

  adminUrl(): string {
    return serverUrl(this.#adminServer);
  }

  accountUrl(name: string): string {
    return serverUrl(this.#servers.find(({ role }) => role === `account ${name}`)?.server);
  }
}

/**
 * S1 on the data plane: the listen host (which the per-account listeners share) is an accepted
 * Host name besides inbound.hosts. A unix-socket listener gets both rules as well.
 */
function dataPlaneHostOrigin(config: SidecarConfig): HostOriginRules {
  return new HostOriginRules(
    {
      hosts: config.inbound.hosts,
      origins: config.inbound.origins,
      listenHosts: 'host' in config.listen ? [config.listen.host] : [],
    },
    { hostsSetting: 'inbound.hosts (or --host in quick mode)', originsSetting: 'inbound.origins' },
  );
}
