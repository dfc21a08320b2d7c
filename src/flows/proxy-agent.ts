import { createRequire } from 'node:module';
import type { Agent, buildConnector, Dispatcher, Pool } from 'undici';
import { proxyFor, type EgressPolicy, type EgressProxy } from '../config/egress.js';

/**
 * undici's whole package, loaded only when an account uses a proxy (E6: this agent, and the
 * WebSocket tunnels of proxy/upgrade-tunnel.ts): the direct path keeps loading Pool alone
 * (docs/performance.md "Memory"). The whole package, not a class's module alone: tunnels are opened
 * with `connect()`, which undici's index adds to every dispatcher.
 */
export function loadUndici(): typeof import('undici') {
  return createRequire(import.meta.url)('undici') as typeof import('undici');
}

/** A client certificate read again when its files change (util/client-certificate.ts). */
interface RotatingCertificate {
  current(): { cert: string; key: string };
}

/** How the agent reaches the target through the proxy, and the limits of its pool to the target. */
export interface ProxyAgentOptions {
  /** TLS to an https target, inside the CONNECT tunnel (the account's `upstreamTls`). */
  tls: { ca?: string[]; rejectUnauthorized: boolean; clientCertificate?: RotatingCertificate };
  connectTimeoutMs: number;
  /** Pool options for each target (connections, keep-alive), passed to undici's Agent. */
  pool?: { connections: number; keepAliveTimeout: number; keepAliveMaxTimeout: number };
}

/**
 * E6: undici's ProxyAgent for `proxy`: https targets through a CONNECT tunnel, http targets as
 * absolute-form requests to the proxy (`proxyTunnel: false`), `Proxy-Authorization` from the
 * proxy's credentials (a secret: handed to undici only, never shown). E2: with a client
 * certificate, each new tunnel's TLS handshake presents the certificate as it is when the tunnel
 * opens (asked once per new tunnel, as the direct path asks once per new connection): a rotated
 * one reaches new tunnels, open ones finish with the old one, and requests pay nothing for it.
 */
export function createProxyAgent(proxy: EgressProxy, options: ProxyAgentOptions): Dispatcher {
  const token = proxy.authorization?.reveal();
  const requestTls = {
    timeout: options.connectTimeoutMs,
    ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
    rejectUnauthorized: options.tls.rejectUnauthorized,
  };
  const certificate = options.tls.clientCertificate;
  return new (loadUndici().ProxyAgent)({
    uri: proxy.url.href,
    ...(token === undefined ? {} : { token }),
    proxyTunnel: false,
    proxyTls: { timeout: options.connectTimeoutMs },
    requestTls,
    ...options.pool,
    ...(certificate === undefined ? {} : { factory: tunnelsWithCertificate(certificate, requestTls) }),
  });
}

/**
 * E2 behind a proxy: the pool factory undici's ProxyAgent calls for each target (AgentOptions
 * `factory`; `opts.connect` is its CONNECT tunnel). undici's ProxyAgent takes `requestTls` once,
 * so for an https target the tunnel is opened as a plain one and the TLS handshake inside it is
 * ours: undici's own connector, made anew when the certificate's files changed (it caches TLS
 * sessions per connector). Connections to the proxy itself, and http targets, are left as they are.
 */
function tunnelsWithCertificate(
  certificate: RotatingCertificate,
  requestTls: buildConnector.BuildOptions,
): NonNullable<Agent.Options['factory']> {
  const { buildConnector: build, Client, Pool } = loadUndici();
  let pair: { cert: string; key: string } | undefined;
  let handshake: buildConnector.connector | undefined;
  const connectorNow = (): buildConnector.connector => {
    const now = certificate.current();
    if (handshake === undefined || now !== pair) {
      pair = now;
      handshake = build({ ...requestTls, ...now });
    }
    return handshake;
  };
  return (origin, opts: Pool.Options) => {
    const tunnel = opts.connect as buildConnector.connector;
    const connect: buildConnector.connector = (target, callback) => {
      if (target.protocol !== 'https:') return tunnel(target, callback);
      // A plain tunnel to the target's port (undici would add http's default port to a bare host).
      const port = target.port === '' ? '443' : target.port;
      const host = target.port === '' ? `${target.host}:443` : target.host;
      tunnel({ ...target, protocol: 'http:', host, port }, (error, socket) => {
        if (error !== null) callback(error, null);
        else connectorNow()({ ...target, httpSocket: socket }, callback);
      });
    };
    return opts.connections === 1 ? new Client(origin, { ...opts, connect }) : new Pool(origin, { ...opts, connect });
  };
}

/**
 * Words for a proxy's refusal (`the proxy answered 407 ...`), or undefined for another failure:
 * undici reports one as `Proxy response (407) !== 200 ...` or `Proxy Authentication Required (407)`.
 */
export function proxyRefusalText(error: Error): string | undefined {
  const status = /Proxy (?:response \((\d{3})\)|Authentication Required \((407)\))/.exec(error.message);
  const code = status?.[1] ?? status?.[2];
  if (code === undefined) return undefined;
  const why = code === '407' ? ' (proxy credentials missing or refused)' : '';
  return `the proxy answered ${code}${why}`;
}

/**
 * E6 for token endpoints: the proxy and its agent for each token URL (login and refresh may
 * differ), one agent per proxy, made on first use. `route` is undefined for a direct request.
 */
export class TokenEgress {
  readonly #agents = new Map<EgressProxy, Dispatcher>();

  constructor(
    readonly policy: EgressPolicy,
    readonly options: ProxyAgentOptions,
  ) {}

  route(url: URL): { proxy: EgressProxy; dispatcher: Dispatcher } | undefined {
    const proxy = proxyFor(this.policy, url);
    if (proxy === undefined) return undefined;
    let dispatcher = this.#agents.get(proxy);
    if (dispatcher === undefined) {
      dispatcher = createProxyAgent(proxy, this.options);
      this.#agents.set(proxy, dispatcher);
    }
    return { proxy, dispatcher };
  }

  /** Closes the agents' connections (stop). */
  async close(): Promise<void> {
    await Promise.all([...this.#agents.values()].map((agent) => agent.destroy()));
    this.#agents.clear();
  }
}
