import type { RequestListener, Server } from 'node:http';
import { createServer } from './util/node-http.js';
import { Registry } from 'prom-client';
import { AdminAccess, adminExposureWarning } from './admin/access.js';
import { createAdminApp } from './admin/server.js';
import { SidecarMetrics } from './admin/metrics.js';
import type { AccountConfig, SidecarConfig } from './config/resolve.js';
import { upstreamTls } from './config/tls.js';
import { sendTokenRequest } from './flows/http-client.js';
import { ClientConnections } from './proxy/client-limits.js';
import { ConnectionSlots } from './proxy/connection-slots.js';
import { DataPlane } from './proxy/forward.js';
import { InboundPolicy } from './proxy/inbound.js';
import { TrustedProxies } from './proxy/trusted-proxies.js';
import { Router } from './proxy/route.js';
import { ReplayBudget } from './proxy/replay-budget.js';
import { createUpstreamPool, sendWithUndici } from './proxy/transport.js';
import { proxyFor } from './config/egress.js';
import { TokenInjector } from './proxy/bearer.js';
import { createStore } from './stores/index.js';
import type { TokenStore } from './stores/types.js';
import { TokenManager } from './tokens/token-manager.js';
import type { SendTokenRequest } from './tokens/types.js';
import { systemClock, type Clock } from './util/clock.js';
import { closeServer, listen, serverUrl } from './util/http-server.js';
import { silentLogger, type Logger } from './util/logger.js';
import { reportSecretReads } from './util/secret-file.js';
import { messageOf } from './util/errors.js';
import { diffConfigs, type ConfigChanges } from './config/reload-diff.js';
import {
  buildAccountsAtOnce,
  buildTokenSide,
  replaceManagers,
  retireAccount,
  retireBuilt,
  Retiring,
  tokenSideOf,
  type AccountsPlan,
  type BuildAccount,
  type ChainInheritance,
  type RunningAccount,
} from './app-accounts.js';
import {
  createDataServer,
  dataListenersOf,
  dataPlaneHostOrigin,
  noNewPorts,
  pointListeners,
  sameListener,
  ShutdownDrain,
  type DataListener,
  type NewPorts,
  type WantedListener,
} from './app-listeners.js';
import { startTracing, type Tracing } from './util/tracing.js';

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

/** H2: the result of a reload: applied (what changed, which listeners were rebound) or rejected (why). */
export type ReloadResult =
  { outcome: 'applied'; changes: ConfigChanges; rebound: string[] } | { outcome: 'rejected'; reasons: string[] };

/** The whole product in one object: config in, servers and token managers out; reload() swaps the config live (H2). */
export class Sidecar {
  #config: SidecarConfig;
  readonly metrics: SidecarMetrics;
  readonly #deps: SidecarDependencies;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #store: TokenStore;
  #accounts: RunningAccount[];
  #dataPlane: DataPlane;
  readonly #servers: DataListener[] = [];
  /** Open data-plane client connections (R9: at most limits.maxConnections); shutdown closes the idle ones at once. */
  readonly #clients: ClientConnections;
  #adminServer: Server | undefined;
  /** H2: the admin app now serving (a reload builds a new one for the new accounts and access rules). */
  #adminApp: RequestListener | undefined;
  /** H2: the reload in progress; stop() waits for it. */
  #reloading: Promise<ReloadResult> | undefined;
  /** H2: listeners and accounts a reload replaced (or built, when a stop cut it short), still finishing their requests. */
  readonly #retiring: Retiring;
  /** H2: the ports the reload in progress has bound, and the data plane they serve on until it applies; stop() drains them too. */
  #newPorts: NewPorts = noNewPorts();
  /** H3: started (and the SDK loaded) by start() only when tracing is configured. */
  #tracing: Tracing | undefined;
  #accepting = false;
  /** R5: stop() may come while start() is still running (a signal during start-up). */
  #stopping = false;
  #starting: Promise<void> | undefined;
  #requestStop: () => void = () => undefined;
  readonly #stopRequested = new Promise<void>((resolve) => (this.#requestStop = resolve));
  /** Shutdown of every data listener (and of the ports a reload in progress bound). */
  readonly #shutdown: ShutdownDrain;

  constructor(config: SidecarConfig, deps: SidecarDependencies = {}) {
    this.#config = config;
    this.#deps = deps;
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
    this.#shutdown = new ShutdownDrain(this.#clients);
    this.#retiring = new Retiring({ logger: this.#logger, timeoutMs: () => this.#config.shutdownTimeoutMs });
    this.#accounts = config.accounts.map((account) => this.#buildAccount(account));
    this.#dataPlane = this.#createDataPlane(config, this.#accounts);
  }

  /** The configuration running now (a reload replaces it). */
  get config(): SidecarConfig {
    return this.#config;
  }

  #createDataPlane(config: SidecarConfig, accounts: RunningAccount[]): DataPlane {
    return new DataPlane({
      router: new Router(accounts),
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

  /**
   * One account's running parts. With `keep`, its token side (manager, flow, token egress) is
   * reused (H2); else a new one is built, taking over `chain` from the one it replaces (H2).
   */
  #buildAccount(
    account: AccountConfig,
    from: { keep?: RunningAccount; chain?: ChainInheritance } = {},
  ): RunningAccount {
    const tls = upstreamTls(account);
    if (account.tls.insecureSkipVerify && from.keep === undefined) {
      this.#logger.warn(
        { account: account.name },
        'upstreamTls.insecureSkipVerify is ON: upstream and token server certificates are NOT verified',
      );
    }
    const tokenSide =
      from.keep === undefined
        ? buildTokenSide(account, this.#store, {
            metrics: this.metrics,
            logger: this.#logger,
            clock: this.#clock,
            send: this.#deps.send ?? sendTokenRequest,
            random: this.#deps.random,
            tracing: this.#config.tracing && (() => this.#tracing),
            ...from.chain,
          })
        : tokenSideOf(from.keep);
    // E2: a bad rotation of the upstream's client certificate is reported as a secret file's failed
    // read is (the listener lives on the certificate, which lives as long as this upstream pool).
    if (tls.clientCertificate !== undefined)
      reportSecretReads(tls.clientCertificate, {
        logger: this.#logger.child({ account: account.name }),
        countFailure: this.metrics.secretReadErrors(account.name),
      });
    const proxy = proxyFor(account.egress, account.upstream);
    const { upstream, timeouts, connections } = account;
    const { tokenEndpointProxy, ...kept } = tokenSide;
    return {
      ...kept,
      name: account.name,
      isDefault: account.isDefault,
      route: account.route,
      upstream: account.upstream,
      basePath: account.upstream.pathname,
      metrics: this.metrics.proxyMetrics(account.name),
      pool: createUpstreamPool({ upstream, tls, timeouts, connections }, proxy),
      proxy,
      // What /status shows: this upstream's proxy (a reload may move the upstream alone).
      proxies: { upstream: proxy, tokenEndpoint: tokenEndpointProxy },
      slots: new ConnectionSlots({
        capacity: account.connections,
        queueMs: account.timeouts.queueMs,
        clock: this.#clock,
      }),
      retryOn: new Set(account.refresh.retryOn),
      replayMaxBody: account.refresh.replayMaxBody,
      timeouts: account.timeouts,
      tls,
      inject: new TokenInjector(account.inject, kept.flow.dpop),
      refreshAt: account.refresh.at,
      config: account,
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
    if (this.#config.tracing !== undefined) {
      this.#tracing = await startTracing(this.#config.tracing);
      this.#dataPlane.traceWith(this.#tracing);
    }
    for (const wanted of dataListenersOf(this.#config)) {
      if (this.#stopping) return;
      this.#servers.push(await this.#bindData(wanted));
      pointListeners(this.#servers, this.#accounts);
    }
    if (this.#stopping) return;
    this.#adminServer = createServer((req, res) => this.#adminApp?.(req, res));
    this.#adminApp = this.#createAdminApp();
    await listen(this.#adminServer, this.#config.admin);
    if (this.#stopping) return;
    const exposure = adminExposureWarning(this.#config.admin);
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

  #createAdminApp(): RequestListener {
    return createAdminApp({
      registry: this.metrics.registry,
      accounts: this.#accounts,
      now: () => this.#clock.now(),
      accepting: () => this.#accepting,
      storeType: this.#store.type,
      access: new AdminAccess({ ...this.#config.admin, hosts: this.#config.inbound.hosts }),
    });
  }

  /** Waits for a start-up step that may be slow (the store), or only until stop() is called. */
  async #unlessStopped(step: Promise<unknown> | undefined): Promise<void> {
    await Promise.race([step, this.#stopRequested]);
  }

  /** Binds a data listener; its requests go to `dataPlane()` (the running one unless a reload gives its own). */
  async #bindData(wanted: WantedListener, dataPlane = () => this.#dataPlane): Promise<DataListener> {
    const listener: DataListener = { ...wanted, account: undefined, server: undefined as unknown as Server };
    listener.server = createDataServer(listener, {
      dataPlane,
      limits: () => this.#config.limits,
      clients: this.#clients,
    });
    await listen(listener.server, listener.address);
    return listener;
  }

  /**
   * H2: binds the data ports of `wanted` not `kept` (a reload's new ones), one by one, into
   * `ports.listeners`; false (no more bound) when stop() began meanwhile. stop() drains the ports
   * it found listed when it began: one bound after that is closed at once (with any connection it
   * took), so none outlives the stop's drain. A bind that fails throws (those listed stay for the
   * caller to close).
   */
  async #bindNewPorts(wanted: WantedListener[], kept: DataListener[], ports: NewPorts): Promise<boolean> {
    // New ports answer with the new configuration's rules (inbound, Host/Origin) from their first
    // request: on `interim` once the reload has built it, then on the new data plane like every port.
    const dataPlaneOfNewPorts = () => ports.interim ?? this.#dataPlane;
    for (const w of wanted.filter((one) => !kept.some((listener) => sameListener(listener, one)))) {
      const listener = await this.#bindData(w, dataPlaneOfNewPorts);
      if (this.#stopping) return closeServer(listener.server, { force: true }).then(() => false);
      ports.listeners.push(listener);
    }
    return true;
  }

  /**
   * H2: applies a new, already validated configuration while serving. Refused (nothing changes)
   * when `store` changed or a new address cannot be bound. Unchanged accounts keep everything;
   * changed ones keep their token manager (tokens, refresh chain) unless auth, refresh, tls or
   * egress changed; requests in flight finish on what they started with; a listener is rebound
   * only when its address changed. stop() waits for a reload in progress, which then closes what
   * it built and resolves as rejected.
   */
  async reload(next: SidecarConfig): Promise<ReloadResult> {
    const changes = diffConfigs(this.#config, next);
    if (changes.refusal !== undefined) return { outcome: 'rejected', reasons: [changes.refusal] };
    if (!this.#accepting || this.#stopping) return { outcome: 'rejected', reasons: [NOT_SERVING] };
    const reloading = this.#reload(next, changes);
    this.#reloading = reloading;
    try {
      return await reloading;
    } finally {
      if (this.#reloading === reloading) {
        this.#reloading = undefined;
        this.#newPorts = noNewPorts();
      }
    }
  }

  async #reload(next: SidecarConfig, changes: ConfigChanges): Promise<ReloadResult> {
    const wanted = dataListenersOf(next);
    const kept = this.#servers.filter((listener) => wanted.some((w) => sameListener(listener, w)));
    const ports: NewPorts = (this.#newPorts = noNewPorts());
    const bound = ports.listeners;
    let admin: Server | undefined;
    try {
      if (!(await this.#bindNewPorts(wanted, kept, ports))) return { outcome: 'rejected', reasons: [NOT_SERVING] };
      admin = await this.#bindNewAdmin(next);
    } catch (error) {
      // A port stop() has begun to drain no longer listens: closeServer leaves it, with the requests
      // in flight on it, to that drain. Closing here still matters when a stop begins right after
      // (the ports would no longer be listed for it).
      await Promise.all(bound.map(({ server }) => closeServer(server, { force: true })));
      return { outcome: 'rejected', reasons: [`cannot listen: ${messageOf(error)}`] };
    }
    const previous = this.#accounts;
    let plan: AccountsPlan | undefined;
    /** Closes what this reload bound and built (a build threw). */
    const undo = async () => {
      await Promise.all(bound.map(({ server }) => closeServer(server, { force: true })));
      if (admin !== undefined) await closeServer(admin, { force: true });
      if (plan !== undefined) await retireBuilt([...plan.accounts.values()], previous);
    };
    let fresh: RunningAccount[];
    try {
      ({ plan, interim: ports.interim } = this.#buildAtOnce(next, previous, bound));
      const build: BuildAccount = (config, from) => this.#buildAccount(config, from);
      fresh = await replaceManagers(plan, previous, { build, stopping: () => this.#stopping });
    } catch (error) {
      await undo();
      throw error;
    }
    const accounts = next.accounts.flatMap((config) => plan.accounts.get(config.name) ?? []);
    if (this.#stopping) {
      // stop() came meanwhile: it stops what is running and drains the new ports with the running
      // ones; what was built for the new config goes once their requests have ended.
      ports.interim.startDraining(this.#shutdown.closeIdle); // in case stop() has not drained yet
      if (admin !== undefined) await closeServer(admin, { force: true });
      this.#retiring.builtAtStop(this.#shutdown.drained, { built: [...plan.accounts.values()], previous });
      return { outcome: 'rejected', reasons: [NOT_SERVING] };
    }
    const retired = this.#servers.filter((listener) => !kept.includes(listener)).map(({ server }) => server);
    this.#config = next;
    this.#accounts = accounts;
    this.#clients.resize(next.limits.maxConnections);
    this.#dataPlane = this.#createDataPlane(next, accounts);
    if (this.#tracing !== undefined) this.#dataPlane.traceWith(this.#tracing);
    this.#newPorts = noNewPorts(); // the new ports now serve on the new data plane, as every port
    this.#servers.splice(0, this.#servers.length, ...kept, ...bound);
    this.#servers.sort((a, b) => Number(a.accountName !== undefined) - Number(b.accountName !== undefined));
    pointListeners(this.#servers, this.#accounts);
    for (const { server } of kept) server.headersTimeout = next.limits.headersTimeoutMs;
    this.#adminApp = this.#createAdminApp();
    const oldAdmin = this.#adminServer;
    if (admin !== undefined) this.#adminServer = admin;
    const servers = admin === undefined || oldAdmin === undefined ? retired : [...retired, oldAdmin];
    this.#retiring.replaced({ servers, previous, running: accounts });
    for (const account of fresh) this.#startManager(account);
    const rebound = [...bound.map((listener) => listener.role), ...(admin === undefined ? [] : ['admin'])];
    return { outcome: 'applied', changes, rebound };
  }

  /**
   * H2: the accounts of `next` that need no old token manager stopped first, built now; the added
   * ones started; and the new ports pointed at their account on a data plane of `next`'s rules (a
   * changed account's port serves it as it runs until its new token manager is in place).
   */
  #buildAtOnce(
    next: SidecarConfig,
    previous: RunningAccount[],
    bound: DataListener[],
  ): { plan: AccountsPlan; interim: DataPlane } {
    const plan = buildAccountsAtOnce(next.accounts, previous, (config, from) => this.#buildAccount(config, from));
    const accounts = next.accounts.flatMap(
      ({ name }) => plan.accounts.get(name) ?? previous.find((account) => account.name === name) ?? [],
    );
    const interim = this.#createDataPlane(next, accounts);
    if (this.#tracing !== undefined) interim.traceWith(this.#tracing);
    if (this.#stopping) interim.startDraining(this.#shutdown.closeIdle);
    pointListeners(bound, accounts);
    if (!this.#stopping) for (const account of plan.added) this.#startManager(account);
    return { plan, interim };
  }

  /** H2: starts the token manager of an account a reload added or gave a new one (a failure is logged). */
  #startManager(account: RunningAccount): void {
    account.manager.start().catch((error: unknown) => {
      this.#logger.error({ account: account.name, err: error }, 'account failed to start after a reload');
    });
  }

  /** H2: a new admin server when the admin address changed (bound, not serving yet), else undefined. */
  async #bindNewAdmin(next: SidecarConfig): Promise<Server | undefined> {
    const { host, port } = this.#config.admin;
    if (this.#adminServer === undefined || (host === next.admin.host && port === next.admin.port)) return undefined;
    const server = createServer((req, res) => this.#adminApp?.(req, res));
    await listen(server, next.admin);
    return server;
  }

  /** Stops accepting, lets in-flight requests finish (up to shutdownTimeout), stops the refreshers. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#requestStop();
    this.#accepting = false;
    // A start-up in progress ends at its next step; what it bound by then is closed below.
    await this.#starting?.catch(() => undefined);
    // H2: the ports a reload in progress bound drain as the running ones do.
    const { listeners: newPorts, interim } = this.#newPorts;
    const timeoutMs = this.#config.shutdownTimeoutMs;
    await this.#shutdown.run(
      { dataPlanes: [this.#dataPlane, interim], listeners: [...this.#servers, ...newPorts] },
      timeoutMs,
    );
    // H2: a reload in progress applies nothing and closes what it built once its ports drained.
    await this.#reloading?.catch(() => undefined);
    await this.#retiring.settled();
    await Promise.all(this.#accounts.map((account) => retireAccount(account, { tokenSide: true })));
    this.#dataPlane.close();
    if (this.#adminServer !== undefined) {
      await closeServer(this.#adminServer, { force: true });
    }
    await this.#store.close();
    // H3: last, once every span has ended: the batch still buffered is exported.
    await this.#tracing?.shutdown();
  }

  /** Resolves when no account has a token request in flight (tests drive the fake clock with it). */
  async settled(): Promise<void> {
    await Promise.all(this.#accounts.map((account) => account.manager.settled()));
  }

  dataUrl(): string {
    return serverUrl(this.#servers.find((listener) => listener.accountName === undefined)?.server);
  }

  adminUrl(): string {
    return serverUrl(this.#adminServer);
  }

  accountUrl(name: string): string {
    return serverUrl(this.#servers.find((listener) => listener.accountName === name)?.server);
  }
}

const NOT_SERVING = 'not serving (still starting, or stopping)';
