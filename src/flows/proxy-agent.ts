import { createRequire } from 'node:module';
import type { Dispatcher, ProxyAgent } from 'undici';
import { proxyFor, type EgressPolicy, type EgressProxy } from '../config/egress.js';

/**
 * undici, loaded only when an account uses a proxy (E6): the direct path keeps loading Pool alone
 * (README, Performance: memory). The whole package is loaded here, not the class's module alone:
 * the agent opens its tunnels with `connect()`, which undici's index adds to every dispatcher.
 */
function undici(): typeof import('undici') {
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
 * certificate, a new agent is made whenever the certificate's files changed (undici's ProxyAgent
 * takes the certificate once), so new tunnels present the rotated one; the old agent is closed
 * gracefully (its requests in flight finish, its idle tunnels close).
 */
export function createProxyAgent(proxy: EgressProxy, options: ProxyAgentOptions): Dispatcher {
  const certificate = options.tls.clientCertificate;
  if (certificate === undefined) return proxyAgent(proxy, options, undefined);
  let pair = certificate.current();
  let agent = proxyAgent(proxy, options, pair);
  const retiring = new Set<Dispatcher>();
  const current = (): Dispatcher => {
    const now = certificate.current();
    if (now === pair) return agent;
    const old = agent;
    retiring.add(old);
    void old
      .close()
      .catch(() => undefined)
      .finally(() => retiring.delete(old));
    pair = now;
    agent = proxyAgent(proxy, options, pair);
    return agent;
  };
  const all = () => [agent, ...retiring];
  // A Dispatcher of undici's own class, so request() and the other helpers it adds work on it.
  const rotating = new (undici().Dispatcher)();
  return Object.assign(rotating, {
    dispatch: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) =>
      current().dispatch(opts, handler),
    close: async () => void (await Promise.all(all().map((each) => each.close()))),
    destroy: async () => void (await Promise.all(all().map((each) => each.destroy()))),
  }) as Dispatcher;
}

function proxyAgent(
  proxy: EgressProxy,
  options: ProxyAgentOptions,
  pair: { cert: string; key: string } | undefined,
): ProxyAgent {
  const token = proxy.authorization?.reveal();
  return new (undici().ProxyAgent)({
    uri: proxy.url.href,
    ...(token === undefined ? {} : { token }),
    proxyTunnel: false,
    proxyTls: { timeout: options.connectTimeoutMs },
    requestTls: {
      timeout: options.connectTimeoutMs,
      ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
      rejectUnauthorized: options.tls.rejectUnauthorized,
      ...pair,
    },
    ...options.pool,
  });
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
