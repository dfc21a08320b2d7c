import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { LRUCache } from 'lru-cache';
import { HOST_NAME } from '../util/host-port.js';

/** The settings behind S1's two rules; every name lower-case. */
export interface HostOriginSettings {
  /** `inbound.hosts`: more accepted Host names (no port), e.g. a Kubernetes Service name. */
  hosts: readonly string[];
  /** `inbound.origins`: browser origins accepted (`https://app.example`, scheme://host[:port]). */
  origins: readonly string[];
  /** The hosts the listeners are bound to (`127.0.0.1`, `my-laptop`); a bound name is accepted as a Host. */
  listenHosts: readonly string[];
}

/** Where the rules apply, to name the settings that would allow a refused request. */
export interface RuleNames {
  /** The setting that adds Host names, e.g. `inbound.hosts (or --host in quick mode)`. */
  hostsSetting: string;
  /** The setting that adds origins, e.g. `inbound.origins`. */
  originsSetting: string;
}

const LONGEST_ECHO = 100;
/** A DNS name is at most 253 characters; with `:65535` no acceptable Host is longer (nor is a bracketed IPv6 literal). */
const LONGEST_HOST = 253 + 6;

/**
 * S1: the Host rule (DNS rebinding) and the Origin rule (requests from web pages), as one object
 * built once per configuration and asked on every request. Decisions on Host values are cached,
 * so the per-request cost is a map lookup and two header reads.
 */
export class HostOriginRules {
  readonly #hosts: ReadonlySet<string>;
  readonly #origins: ReadonlySet<string>;
  readonly #names: RuleNames;
  readonly #hostDecisions = new LRUCache<string, HostDecision>({ max: 1024 });
  /** The last Host asked and its decision: clients send one Host again and again, and this skips the LRU's bookkeeping. */
  #lastHost: { host: string; decision: HostDecision } | undefined;

  constructor(settings: HostOriginSettings, names: RuleNames) {
    this.#hosts = new Set([...settings.hosts, ...settings.listenHosts].map((name) => normalName(name)));
    this.#origins = new Set(settings.origins.map((origin) => configuredOrigin(origin)));
    this.#names = names;
  }

  /**
   * The reason to refuse a request (403 `forbidden`), or undefined to let it in: the Host rule
   * first, then the Origin rule. `headers` are Node's (lower-case names). Never throws.
   */
  problem(headers: IncomingHttpHeaders): string | undefined {
    return this.hostProblem(headers.host) ?? this.originProblem(headers);
  }

  /**
   * S1 Host rule: accepted are no Host at all (HTTP/1.0; a browser always sends one), a loopback
   * name (`localhost`, `*.localhost`), an IP literal (a page cannot rebind a literal), a listen
   * address or a name in `inbound.hosts`; the port is ignored. A name with a character no DNS
   * name holds (`evil.com/.localhost`, `a@b.localhost`) is refused whatever it ends with.
   */
  hostProblem(host: string | undefined): string | undefined {
    if (host === undefined) return undefined;
    const decision = this.#lastHost?.host === host ? this.#lastHost.decision : this.#decide(host);
    if (decision === 'accepted') return undefined;
    if (decision === 'malformed')
      return (
        `Host ${quoted(host)} is not a valid host name (letters, digits, "-", "_" and dots, ` +
        `or an IP address, then optionally ":port")`
      );
    return (
      `Host ${quoted(host)} is not a loopback name, an IP address or a name this sidecar listens on ` +
      `(this protects against DNS rebinding): if clients really use this name, add it to ${this.#names.hostsSetting}`
    );
  }

  /** The Host rule's decision on `host`, from the cache or decided now, remembered as the last one asked. */
  #decide(host: string): HostDecision {
    let decision: HostDecision | undefined = host.length > LONGEST_HOST ? 'unknown' : this.#hostDecisions.get(host);
    if (decision === undefined) {
      decision = this.#hostDecision(host);
      this.#hostDecisions.set(host, decision);
    }
    if (host.length <= LONGEST_HOST) this.#lastHost = { host, decision };
    return decision;
  }

  /**
   * S1 Origin rule: an `Origin` in `inbound.origins` is accepted whatever `Sec-Fetch-Site` says;
   * otherwise any `Origin` header (even `null`), or `Sec-Fetch-Site` `cross-site` or `same-site`,
   * marks a request sent by a web page, which is refused.
   */
  originProblem(headers: IncomingHttpHeaders): string | undefined {
    const origin = headers.origin;
    if (origin !== undefined) {
      if (this.#origins.has(normalOrigin(origin))) return undefined;
      return (
        `requests from web pages are refused (Origin ${quoted(origin)}): ` +
        `if this page should use the sidecar, add its origin to ${this.#names.originsSetting}`
      );
    }
    const site = headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site')
      return (
        `requests from web pages are refused (Sec-Fetch-Site: ${site}): ` +
        `if a page should use the sidecar, add its origin to ${this.#names.originsSetting}`
      );
    return undefined;
  }

  #hostDecision(host: string): HostDecision {
    const name = hostName(host);
    if (name === undefined) return 'malformed';
    if (isIP(name) !== 0) return 'accepted';
    // The name goes upstream as X-Forwarded-Host: only what a DNS name may hold passes.
    if (!HOST_NAME.test(name)) return 'malformed';
    if (name === 'localhost' || name.endsWith('.localhost')) return 'accepted';
    return this.#hosts.has(name) ? 'accepted' : 'unknown';
  }
}

/** What the Host rule decided about one Host value (cached). */
type HostDecision = 'accepted' | 'malformed' | 'unknown';

/** The name part of a Host value (`[::1]:8080` -> `::1`, `Api.Example.:80` -> `api.example`), or undefined if malformed. */
function hostName(host: string): string | undefined {
  const text = host.trim();
  if (text.startsWith('[')) {
    const match = /^\[([0-9A-Fa-f:.]+)\](?::\d*)?$/.exec(text);
    return match ? match[1]!.toLowerCase() : undefined;
  }
  const match = /^([^:\s]+)(?::\d*)?$/.exec(text);
  return match ? normalName(match[1]!) : undefined;
}

/** Lower case, one trailing dot dropped (`localhost.` is the same name as `localhost`). */
function normalName(name: string): string {
  const lower = name.trim().toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** Origins compare case-insensitively and without a trailing slash (`https://App.example/`). */
function normalOrigin(origin: string): string {
  const lower = origin.trim().toLowerCase();
  return lower.endsWith('/') ? lower.slice(0, -1) : lower;
}

/** A configured origin as a browser serialises it: `https://App.example:443/` -> `https://app.example`. */
function configuredOrigin(origin: string): string {
  try {
    const parsed = new URL(origin.trim()).origin;
    return parsed === 'null' ? normalOrigin(origin) : parsed;
  } catch {
    return normalOrigin(origin);
  }
}

/** A client-sent value inside a message: JSON-quoted (no control characters survive) and bounded. */
function quoted(value: string): string {
  return JSON.stringify(value.length > LONGEST_ECHO ? `${value.slice(0, LONGEST_ECHO)}...` : value);
}
