import type { Server } from 'node:http';
import { createServer } from './util/node-http.js';
import type { SidecarConfig } from './config/resolve.js';
import type { ClientConnections } from './proxy/client-limits.js';
import { dataServerOptions } from './proxy/client-limits.js';
import { errorBody } from './proxy/errors.js';
import { hasRequestInFlight } from './proxy/in-flight.js';
import { HostOriginRules } from './proxy/host-origin.js';
import { sameSetting } from './config/reload-diff.js';
import type { DataPlane } from './proxy/forward.js';
import type { UpstreamAccount } from './proxy/upstream.js';
import { closeServer, type ListenAddress } from './util/http-server.js';

/** One data-plane listener: the shared one (`account` undefined) or an account's own port. */
export interface DataListener {
  server: Server;
  role: string;
  address: ListenAddress;
  /** The account whose own port this is, or undefined for the shared listener. */
  accountName: string | undefined;
  /** H2: the account its requests go to; a reload points it at the account's new settings. */
  account: UpstreamAccount | undefined;
}

/** What a data-plane server reads at each request: after a reload, the new data plane and limits. */
export interface DataServerContext {
  dataPlane(): DataPlane;
  limits(): SidecarConfig['limits'];
  clients: ClientConnections;
}

/** A data-plane HTTP server for `listener` (not bound yet); requests Node's parser refuses get the F5 JSON error. */
export function createDataServer(listener: Omit<DataListener, 'server'>, context: DataServerContext): Server {
  const server = createServer(dataServerOptions(context.limits()), (req, res) =>
    context.dataPlane().handleRequest(req, res, listener.account),
  );
  server.on('connection', context.clients.accept);
  server.on('connect', (req, socket) => context.dataPlane().handleConnect(req, socket));
  server.on('upgrade', (req, socket, head) => context.dataPlane().handleUpgrade(req, socket, head, listener.account));
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    // Requests Node's parser refuses still get the JSON error of F5.
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = errorBody(
      'bad_request',
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? `the request head was not complete within ${context.limits().headersTimeoutMs}ms (limits.headersTimeout)`
        : `malformed HTTP request (${error.code ?? 'parse error'})`,
    );
    // Closed both ways once written: a client that keeps sending (slow-loris) keeps no socket.
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
  });
  return server;
}

/**
 * H2: stops `servers` accepting and lets their requests finish; after `timeoutMs` the rest is cut.
 * Resolves once all are closed.
 */
export async function drainServers(servers: readonly Server[], timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      for (const server of servers) server.closeAllConnections();
      resolve();
    }, timeoutMs);
  });
  await Promise.race([Promise.all(servers.map((server) => closeServer(server))), deadline]);
  clearTimeout(timer);
}

export type WantedListener = Pick<DataListener, 'role' | 'address' | 'accountName'>;

/** The data listeners a configuration asks for: the shared one, then one per account with its own port (on the listen host). */
export function dataListenersOf(config: SidecarConfig): WantedListener[] {
  const host = 'host' in config.listen ? config.listen.host : '127.0.0.1';
  return [
    { role: 'data plane', address: config.listen, accountName: undefined },
    ...config.accounts.flatMap(({ name, route }) =>
      route.port === undefined
        ? []
        : [{ role: `account ${name}`, address: { host, port: route.port }, accountName: name }],
    ),
  ];
}

/** H2: a listener is kept when the new configuration wants the same address for the same purpose. */
export function sameListener(listener: WantedListener, wanted: WantedListener): boolean {
  return listener.accountName === wanted.accountName && sameSetting(listener.address, wanted.address);
}

/**
 * S1 on the data plane: the listen host (which the per-account listeners share) is an accepted
 * Host name besides inbound.hosts. A unix-socket listener gets both rules as well.
 */
export function dataPlaneHostOrigin(config: SidecarConfig): HostOriginRules {
  return new HostOriginRules(
    {
      hosts: config.inbound.hosts,
      origins: config.inbound.origins,
      listenHosts: 'host' in config.listen ? [config.listen.host] : [],
    },
    { hostsSetting: 'inbound.hosts (or --host in quick mode)', originsSetting: 'inbound.origins' },
  );
}

/** Points each data listener at its account in `accounts` (after start-up, and by every reload). */
export function pointListeners(listeners: readonly DataListener[], accounts: readonly UpstreamAccount[]): void {
  for (const listener of listeners)
    listener.account = accounts.find((account) => account.name === listener.accountName);
}

/** H2: the ports a reload has bound, not running yet, and the data plane they serve on until it applies. */
export interface NewPorts {
  listeners: DataListener[];
  interim: DataPlane | undefined;
}

/** H2: no reload has ports of its own pending. */
export function noNewPorts(): NewPorts {
  return { listeners: [], interim: undefined };
}

/**
 * Shutdown of the data listeners (§2 SIGTERM): answers say `connection: close`, idle client
 * connections close at once, listeners stop accepting and their requests finish (cut after the
 * timeout). H2: it covers the ports a reload in progress bound too, and tells such a reload when
 * the drain is over (`drained`), so what it built for those ports closes only after.
 */
export class ShutdownDrain {
  readonly #clients: ClientConnections;
  #over: () => void = () => undefined;
  /** Resolves once run() has drained the data listeners. */
  readonly drained = new Promise<void>((resolve) => (this.#over = resolve));

  constructor(clients: ClientConnections) {
    this.#clients = clients;
  }

  /** Closes every client connection with no request in flight (Node's closeIdleConnections() skips those that never sent one). */
  readonly closeIdle = (): void => {
    for (const socket of this.#clients.sockets()) if (!hasRequestInFlight(socket)) socket.destroy();
  };

  /** Drains `listeners` (served by `dataPlanes`) for at most `timeoutMs`; resolves once all are closed. */
  async run(
    serving: { dataPlanes: ReadonlyArray<DataPlane | undefined>; listeners: readonly DataListener[] },
    timeoutMs: number,
  ): Promise<void> {
    for (const dataPlane of serving.dataPlanes) dataPlane?.startDraining(this.closeIdle);
    const drained = drainServers(
      serving.listeners.map(({ server }) => server),
      timeoutMs,
    );
    this.closeIdle();
    await drained;
    this.#over();
  }
}
