import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { AddressList, unmappedAddress } from '../proxy/address-list.js';
import { errorBody } from '../proxy/errors.js';
import { HostOriginRules } from '../proxy/host-origin.js';
import { ApiKeys } from '../proxy/inbound.js';
import type { Secret } from '../util/secret.js';

/** What the admin port's rules are built from (the resolved `admin` and `inbound.hosts`). */
export interface AdminAccessSettings {
  /** `admin.host`: the address the admin port is bound to; a name there is an accepted Host. */
  host: string;
  /** `admin.allow`. */
  allow: BlockList;
  /** `admin.apiKeys` (and the keys of `admin.apiKeyFiles`). */
  apiKeys: readonly Secret[];
  /** `inbound.hosts`: the data plane's extra Host names, shared by the admin port. */
  hosts: readonly string[];
}

const HOSTS_SETTING = 'inbound.hosts (the admin port shares it)';

/**
 * S4: who may use the admin port. `everyRequest` runs first on every endpoint: the client address
 * must be in `admin.allow` (403 naming it), and the Host must pass S1's Host rule (403).
 * `guarded` runs on `/status` and every POST: S1's Origin rule, with the admin port's own pages
 * (same origin) accepted, then `Authorization: Bearer <key>` when `admin.apiKeys` is set (401).
 */
export class AdminAccess {
  readonly #allow: AddressList;
  readonly #keys: ApiKeys;
  readonly #rules: HostOriginRules;

  constructor(settings: AdminAccessSettings) {
    this.#allow = new AddressList(settings.allow);
    this.#keys = new ApiKeys(settings.apiKeys);
    this.#rules = new HostOriginRules(
      { hosts: settings.hosts, origins: [], listenHosts: [settings.host] },
      // Only the Host rule is asked: the admin port's Origin rule (below) accepts its own pages, no list.
      { hostsSetting: HOSTS_SETTING, originsSetting: 'none' },
    );
  }

  /** Express middleware for every admin endpoint: `admin.allow`, then the Host rule. */
  readonly everyRequest: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const problem = this.#addressProblem(req.socket.remoteAddress) ?? this.#rules.hostProblem(req.headers.host);
    if (problem === undefined) next();
    else res.status(403).type('json').send(errorBody('forbidden', problem));
  };

  /** Express middleware for `/status` and every POST: the Origin rule (403), then the API key (401). */
  readonly guarded: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const problem = originProblem(req.headers);
    if (problem !== undefined) {
      res.status(403).type('json').send(errorBody('forbidden', problem));
      return;
    }
    if (this.#keys.required && !this.#keys.matches(bearerValue(req.headers.authorization))) {
      res
        .status(401)
        .set('www-authenticate', 'Bearer realm="bearer-sidecar admin"')
        .type('json')
        .send(
          errorBody(
            'unauthorized',
            'this admin endpoint needs Authorization: Bearer <key>, with a key from admin.apiKeys (/metrics, /healthz and /readyz need none)',
          ),
        );
      return;
    }
    next();
  };

  #addressProblem(address: string | undefined): string | undefined {
    if (address === undefined) return 'the client address is unknown (the connection is gone)';
    if (this.#allow.has(address)) return undefined;
    return `client address ${unmappedAddress(address)} may not use the admin port: add it (or a range holding it) to admin.allow`;
  }
}

/**
 * S1's Origin rule on the admin port: its own pages (an `Origin` equal to `http://` + the Host the
 * request was sent to, which the Host rule has already accepted) may send requests; any other
 * `Origin`, or `Sec-Fetch-Site` `cross-site` / `same-site`, is a web page elsewhere: refused.
 */
function originProblem(headers: IncomingHttpHeaders): string | undefined {
  const { origin, host } = headers;
  if (origin !== undefined) {
    if (host !== undefined && origin.toLowerCase() === `http://${host.toLowerCase()}`) return undefined;
    return `requests from other web pages are refused on the admin port (Origin ${JSON.stringify(origin.slice(0, 100))}); only its own pages may send them`;
  }
  const site = headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site')
    return `requests from other web pages are refused on the admin port (Sec-Fetch-Site: ${site})`;
  return undefined;
}

/** The credentials of `Authorization: Bearer <key>` (scheme case-insensitive), or undefined. */
function bearerValue(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^bearer +(\S+) *$/i.exec(header);
  return match?.[1];
}

/** 127.0.0.0/8, ::1 and the IPv4-mapped 127.0.0.0/8: addresses only this machine reaches. */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** True for a host only this machine reaches: `localhost`, or a loopback address however written (`[::1]`, `0:0:0:0:0:0:0:1`). */
function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (name === 'localhost') return true;
  const family = isIP(name);
  return family !== 0 && LOOPBACK.check(name, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * S4: the warning logged once at start when the admin port is reachable from other machines
 * (bound to a non-loopback address) by anyone (`admin.allow` holds a /0 range) without a key;
 * undefined when it is not.
 */
export function adminExposureWarning(admin: {
  host: string;
  allowsAnyAddress: boolean;
  apiKeys: readonly Secret[];
}): string | undefined {
  if (isLoopbackHost(admin.host) || !admin.allowsAnyAddress || admin.apiKeys.length > 0) return undefined;
  return (
    `the admin port listens on ${admin.host}, not only on this machine, and any address may use it without a key: ` +
    'anyone who can reach it can read /status and ask for token refreshes (POST /accounts/NAME/refresh); ' +
    'narrow admin.allow to the addresses that need it, or set admin.apiKeys'
  );
}
