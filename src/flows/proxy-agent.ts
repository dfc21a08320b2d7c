import { createRequire } from 'node:module';
import type { Dispatcher, ProxyAgent } from 'undici';
import { proxyFor, type EgressPolicy, type EgressProxy } from '../config/egress.js';

/**
 * undici's ProxyAgent class, loaded only when an account uses a proxy (E6): the direct path keeps
 * loading Pool alone (README, Performance: memory). The whole package is loaded here, not the
 * class's module alone: the agent opens its tunnels with `connect()`, which undici's index adds
 * to every dispatcher.
 */
function undiciProxyAgent(): typeof ProxyAgent {
  return (createRequire(import.meta.url)('undici') as typeof import('undici')).ProxyAgent;
}

/** How the agent reaches the target through the proxy, and the limits of its pool to the target. */
export interface ProxyAgentOptions {
  /** TLS to an https target, inside the CONNECT tunnel (the account's `upstreamTls`). */
  tls: { ca?: string[]; rejectUnauthorized: boolean; clientCertificate?: { current(): { cert: string; key: string } } };
  connectTimeoutMs: number;
  /** Pool options for each target (connections, keep-alive), passed to undici's Agent. */
  pool?: { connections: number; keepAliveTimeout: number; keepAliveMaxTimeout: number };
}

/**
 * E6: undici's ProxyAgent for `proxy`: https targets through a CONNECT tunnel, http targets as
 * absolute-form requests to the proxy (`proxyTunnel: false`), `Proxy-Authorization` from the
 * proxy's credentials (a secret: handed to undici only, never shown).
 */
export function createProxyAgent(proxy: EgressProxy, options: ProxyAgentOptions): Dispatcher {
  const Agent = undiciProxyAgent();
  const token = proxy.authorization?.reveal();
  return new Agent({
    uri: proxy.url.href,
    ...(token === undefined ? {} : { token }),
    proxyTunnel: false,
    proxyTls: { timeout: options.connectTimeoutMs },
    requestTls: {
      timeout: options.connectTimeoutMs,
      ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
      rejectUnauthorized: options.tls.rejectUnauthorized,
      // E2 through a proxy: the certificate as it is at start (a rotation takes a restart here).
      ...options.tls.clientCertificate?.current(),
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
