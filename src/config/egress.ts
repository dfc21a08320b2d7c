import { Secret } from '../util/secret.js';
import { readSecretFileAtStart } from '../util/secret-file.js';
import { messageOf } from '../util/errors.js';
import { displayUrl } from '../util/display-url.js';

/** A problem by config path (resolve.ts's ConfigProblem; not imported, so no import cycle). */
interface ConfigProblem {
  path: string;
  message: string;
}

/*
 * E6: which egress proxy, if any, carries a request to a token endpoint or an upstream. Decided
 * once per target at start-up (the targets are fixed by the config), so the data plane's choice
 * costs nothing per request and `check` and /status can say which proxy is used.
 */

/** One egress proxy as the sidecar uses it. Its credentials are a secret (F6), never shown. */
export interface EgressProxy {
  /** The proxy's URL without userinfo: what logs, `check` and /status show. */
  url: URL;
  /** The `Proxy-Authorization` value (`Basic ...`), from the URL's userinfo or `proxyAuthFile`. */
  authorization: Secret | undefined;
  /** Where the setting came from: `HTTPS_PROXY`, `HTTP_PROXY` or `accounts.NAME.proxy`. */
  source: string;
}

/** One NO_PROXY entry as undici's EnvHttpProxyAgent parses it: a host (or domain) and a port (0: any). */
interface NoProxyEntry {
  hostname: string;
  port: number;
}

/** An account's egress: no proxy, its own proxy for every target, or the environment's rules. */
export type EgressPolicy =
  | { kind: 'direct' }
  | { kind: 'account'; proxy: EgressProxy }
  | { kind: 'env'; http: EgressProxy | undefined; https: EgressProxy | undefined; noProxy: NoProxyRule };

/** The raw settings: `proxy` (a URL, null for none, undefined for the environment's) and `proxyAuthFile`. */
export interface EgressSettings {
  proxy?: string | null;
  proxyAuthFile?: string;
}

/** NO_PROXY read as undici 7's EnvHttpProxyAgent reads it (test/unit/egress.test.ts holds the two together). */
export class NoProxyRule {
  readonly #all: boolean;
  readonly #entries: NoProxyEntry[];

  constructor(value: string) {
    this.#all = value === '*';
    this.#entries = value
      .split(/[,\s]/)
      .filter((entry) => entry !== '')
      .map((entry) => {
        const parsed = /^(.+):(\d+)$/.exec(entry);
        return {
          // A leading "." or "*." means the domain and its subdomains, as the bare name does.
          hostname: (parsed ? (parsed[1] as string) : entry).replace(/^\*?\./, '').toLowerCase(),
          port: parsed ? Number.parseInt(parsed[2] as string, 10) : 0,
        };
      });
  }

  /** True when `target` goes direct: its host (with IPv6 brackets) or a parent domain is listed, for its port or any. */
  excludes(target: URL): boolean {
    if (this.#entries.length === 0) return false;
    if (this.#all) return true;
    const hostname = target.host.replace(/:\d*$/, '').toLowerCase();
    const port = Number.parseInt(target.port, 10) || (target.protocol === 'https:' ? 443 : 80);
    return this.#entries.some(
      (entry) =>
        (entry.port === 0 || entry.port === port) &&
        (hostname === entry.hostname || hostname.endsWith(`.${entry.hostname}`)),
    );
  }
}

/** The proxy `target` is reached through under `policy`, or undefined: direct (E6). */
export function proxyFor(policy: EgressPolicy, target: URL): EgressProxy | undefined {
  if (policy.kind === 'direct') return undefined;
  if (policy.kind === 'account') return policy.proxy;
  if (policy.noProxy.excludes(target)) return undefined;
  // As undici: an https target without HTTPS_PROXY uses HTTP_PROXY.
  return target.protocol === 'https:' ? (policy.https ?? policy.http) : policy.http;
}

/** What operators see of a proxy choice: `http://proxy:3128 (HTTPS_PROXY)`, or `direct`. Never credentials. */
export function describeProxy(proxy: EgressProxy | undefined): string {
  return proxy === undefined ? 'direct' : `${displayUrl(proxy.url)} (${proxy.source})`;
}

/** Lower case first, as undici and curl read them. */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name.toLowerCase()] ?? env[name];
  return value === undefined || value === '' ? undefined : value;
}

/**
 * E6: an account's egress from its `proxy` / `proxyAuthFile` settings and the environment
 * (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, either case). `proxyAuthFile` (user:password) is read
 * here, once, and replaces any userinfo in the URL. Problems are added to `problems` by path.
 */
export function resolveEgress(
  settings: EgressSettings,
  env: NodeJS.ProcessEnv,
  path: string,
  problems: ConfigProblem[],
): EgressPolicy {
  const auth = settings.proxyAuthFile === undefined ? undefined : readProxyAuth(settings.proxyAuthFile, path, problems);
  if (settings.proxy === null) return { kind: 'direct' };
  if (settings.proxy !== undefined) {
    const proxy = egressProxy(settings.proxy, `${path}.proxy`, auth, problems);
    return proxy === undefined ? { kind: 'direct' } : { kind: 'account', proxy };
  }
  const fromEnv = (name: string) => {
    const value = envValue(env, name);
    return value === undefined ? undefined : egressProxy(value, name, auth, problems);
  };
  const http = fromEnv('HTTP_PROXY');
  const https = fromEnv('HTTPS_PROXY');
  if (http === undefined && https === undefined) return { kind: 'direct' };
  return { kind: 'env', http, https, noProxy: new NoProxyRule(envValue(env, 'NO_PROXY') ?? '') };
}

/** `value` as a proxy; `source` (the setting's name or path) is also where a problem with it is reported. */
function egressProxy(
  value: string,
  source: string,
  auth: Secret | undefined,
  problems: ConfigProblem[],
): EgressProxy | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // The value itself may hold credentials: never quoted.
    problems.push({ path: source, message: 'not a URL (expected http://host:port or https://host:port)' });
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.push({
      path: source,
      message: `proxy scheme ${url.protocol} is not supported (use http: or https:)`,
    });
    return undefined;
  }
  let fromUrl: Secret | undefined;
  try {
    fromUrl =
      url.username === '' && url.password === ''
        ? undefined
        : basicCredentials(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
  } catch {
    // A bad percent-escape in the user or password (never quoted: it is a credential).
    problems.push({ path: source, message: 'the user or password in the proxy URL has a bad percent-escape (%XX)' });
    return undefined;
  }
  url.username = '';
  url.password = '';
  return { url, authorization: auth ?? fromUrl, source };
}

function basicCredentials(userPassword: string): Secret {
  return new Secret(`Basic ${Buffer.from(userPassword, 'utf8').toString('base64')}`);
}

function readProxyAuth(file: string, path: string, problems: ConfigProblem[]): Secret | undefined {
  try {
    const value = readSecretFileAtStart(file).secret.reveal();
    if (!value.includes(':')) {
      problems.push({ path: `${path}.proxyAuthFile`, message: 'must hold user:password' });
      return undefined;
    }
    return basicCredentials(value);
  } catch (error) {
    problems.push({ path: `${path}.proxyAuthFile`, message: messageOf(error) });
    return undefined;
  }
}
