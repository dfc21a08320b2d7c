import { createServer, type Server } from 'node:http';
import { BlockList, type Socket } from 'node:net';
import type { EgressProxy } from '../../src/config/egress.js';
import { ConnectionSlots } from '../../src/proxy/connection-slots.js';
import { DataPlane } from '../../src/proxy/forward.js';
import { UNBOUNDED_REPLAY_BUDGET, type ReplayBudget } from '../../src/proxy/replay-budget.js';
import { systemClock, type Clock } from '../../src/util/clock.js';
import { HostOriginRules } from '../../src/proxy/host-origin.js';
import { InboundPolicy } from '../../src/proxy/inbound.js';
import { Router } from '../../src/proxy/route.js';
import { createUndiciPool, sendWithUndici, type Transport } from '../../src/proxy/transport.js';
import type { ProxyMetrics, ReplayOutcome } from '../../src/proxy/types.js';
import { AUTHORIZATION_HEADER, type UpstreamAccount } from '../../src/proxy/upstream.js';
import { ActiveToken } from '../../src/tokens/active-token.js';
import type { TokenManager } from '../../src/tokens/token-manager.js';
import { TokenUnavailableError } from '../../src/tokens/types.js';
import { closeServer, listen, serverUrl } from '../../src/util/http-server.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from './capture-logger.js';

/** A token as the manager would hand it out, whatever its value (even one that is not header-safe). */
export function activeToken(value: string, generation = 1): ActiveToken {
  return new ActiveToken(new Secret(value), generation, 0, Number.MAX_SAFE_INTEGER, 3_600_000);
}

/** The part of TokenManager the data plane uses; each defaults to "no token can come". */
export interface StubTokens {
  current?: () => ActiveToken | undefined;
  waitForToken?: () => Promise<ActiveToken>;
  replacementFor?: (token: ActiveToken) => Promise<ActiveToken>;
  tokenAccepted?: (token: ActiveToken) => void;
}

export interface DataPlaneHarness {
  url: string;
  plane: DataPlane;
  /** Every status the account's metrics counted, in order. */
  observed: number[];
  replays: ReplayOutcome[];
  log: ReturnType<typeof captureLogger>;
  /** R10: the account's upstream connection slots (a test can see that every request gave its slot back). */
  slots: ConnectionSlots;
  close(): Promise<void>;
}

const noToken = () => Promise.reject(new TokenUnavailableError('no token in this test', 1));

/**
 * The data plane alone, on a real listener (port 0) wired as app.ts wires it, with one default
 * account `crm` whose token manager is a stub: tests hand it any token, or none.
 */
export async function startDataPlane(options: {
  upstream: string;
  tokens: StubTokens;
  retryOn?: number[];
  transport?: Transport;
  /** Replaces the recording metrics (a test can make them throw). */
  metrics?: Partial<ProxyMetrics>;
  /** R10: the pool's size (default 128) and the queue's clock (default the real one). */
  connections?: number;
  clock?: Clock;
  timeouts?: Partial<UpstreamAccount['timeouts']>;
  /** R9: the shared bound on replay copies (default none). */
  replayBudget?: ReplayBudget;
  /** E6: the egress proxy WebSocket upgrades go through (default none; plain requests stay on the pool). */
  proxy?: EgressProxy;
}): Promise<DataPlaneHarness> {
  const observed: number[] = [];
  const replays: ReplayOutcome[] = [];
  const metrics: ProxyMetrics = {
    observe: (code) => observed.push(code),
    upstreamRejection: () => undefined,
    replay: (outcome) => replays.push(outcome),
    dpopNonceRetry: () => undefined,
    ...options.metrics,
  };
  const manager = {
    current: options.tokens.current ?? (() => undefined),
    waitForToken: options.tokens.waitForToken ?? noToken,
    replacementFor: options.tokens.replacementFor ?? noToken,
    tokenAccepted: options.tokens.tokenAccepted ?? (() => undefined),
  } as unknown as TokenManager;
  const upstream = new URL(options.upstream);
  const timeouts = { connectMs: 5_000, responseMs: 10_000, queueMs: 5_000, ...options.timeouts };
  const connections = options.connections ?? 128;
  const tls = { rejectUnauthorized: true };
  const account: UpstreamAccount = {
    name: 'crm',
    isDefault: true,
    route: {},
    upstream,
    basePath: upstream.pathname === '/' ? '' : upstream.pathname,
    manager,
    metrics,
    pool: createUndiciPool({ upstream, tls, timeouts, connections }),
    slots: new ConnectionSlots({
      capacity: connections,
      queueMs: timeouts.queueMs,
      clock: options.clock ?? systemClock,
    }),
    retryOn: new Set(options.retryOn ?? [401]),
    replayMaxBody: 1024 * 1024,
    timeouts,
    tls,
    inject: AUTHORIZATION_HEADER,
    proxy: options.proxy,
  };
  const allow = new BlockList();
  allow.addSubnet('127.0.0.0', 8, 'ipv4');
  const log = captureLogger('debug');
  const plane = new DataPlane({
    router: new Router([account]),
    inbound: new InboundPolicy(allow, []),
    hostOrigin: new HostOriginRules(
      { hosts: [], origins: [], listenHosts: ['127.0.0.1'] },
      { hostsSetting: 'inbound.hosts', originsSetting: 'inbound.origins' },
    ),
    unrouted: metrics,
    logger: log.logger,
    clientIdleTimeoutMs: 10_000,
    unixSocket: false,
    transport: options.transport ?? sendWithUndici,
    replayBudget: options.replayBudget ?? UNBOUNDED_REPLAY_BUDGET,
    clock: options.clock ?? systemClock,
  });
  const server: Server = createServer((req, res) => plane.handleRequest(req, res));
  // Upgraded and CONNECT sockets leave the server's HTTP bookkeeping: close() must cut them too.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('connect', (req, socket) => plane.handleConnect(req, socket));
  server.on('upgrade', (req, socket, head) => plane.handleUpgrade(req, socket, head));
  await listen(server, { host: '127.0.0.1', port: 0 });
  return {
    url: serverUrl(server),
    plane,
    observed,
    replays,
    log,
    slots: account.slots,
    async close() {
      for (const socket of sockets) socket.destroy();
      await closeServer(server, { force: true });
      plane.close();
      await account.pool.destroy();
    },
  };
}
