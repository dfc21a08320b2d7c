import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../util/node-http.js';
import { closeServer, listen, serverUrl } from '../util/http-server.js';

/*
 * A real token server in the session dialect (seeds 001 and 003): login and refresh with
 * rotating single-use refresh tokens. `bearer-sidecar demo` runs it, and tests use it as a fake.
 * It logs nothing, so no secret can leak from it.
 */

export interface SessionTokenServerOptions {
  username: string;
  password: string;
  /** If set, a login must send it as the number `account_id`. */
  accountId?: number;
  /** The real lifetime of each token, sent as `tokenLifetime` unless overridden below. */
  lifetimeSeconds: number;
  /** If the key is present (even null, "abc", 0, -5), sent as `tokenLifetime` instead. */
  lifetimeField?: unknown;
  /** Leave `tokenLifetime` out of responses altogether. */
  omitLifetime?: boolean;
  /** The server clock is now() + clockSkewMs: used for `Date` and the absolute expirations. */
  clockSkewMs?: number;
  /** The local clock; token validity follows it (the real lifetime, never the skew). */
  now?: () => number;
  host?: string;
  port?: number;
  /**
   * The demo's outage switch: `POST /demo/outage?on=1` makes every token request a 503 until
   * `?on=0`, so a user can watch the sidecar ride out a broken token server (/status, metrics).
   */
  outageSwitch?: boolean;
}

export interface SessionTokenServerStats {
  logins: number;
  refreshes: number;
  rejectedLogins: number;
  rejectedRefreshes: number;
  refreshTokenReuse: number;
  requests: number;
}

export interface SessionTokenServer {
  url: string;
  loginUrl: string;
  refreshUrl: string;
  stats: SessionTokenServerStats;
  /** With `outageSwitch`: the URL to POST `?on=1` / `?on=0` to. */
  outageUrl?: string;
  /** True for a token this server issued that has not expired per now(). */
  isValidToken(token: string): boolean;
  setLifetime(seconds: number): void;
  close(): Promise<void>;
}

const REFRESH_TOKEN_LIFETIME_MS = 30 * 24 * 3600 * 1000;
// Caps keep a demo that runs for days (or a client stuck in a login loop) from growing without end.
const MAX_LIVE_TOKENS = 10_000;
const MAX_USED_REFRESH_TOKENS = 10_000;
const MAX_BODY_BYTES = 64 * 1024;

interface RefreshGrant {
  expiresAt: number;
  guid: string;
}

interface TokenState {
  accessTokens: Map<string, number>;
  refreshTokens: Map<string, RefreshGrant>;
  usedRefreshTokens: Set<string>;
  lifetimeSeconds: number;
}

type JsonBody = Record<string, unknown>;

interface Reply {
  status: number;
  body: JsonBody;
}

/**
 * The session dialect's rules on one state: login, single-use refresh, issuing. No sockets: the
 * server below only routes requests to it.
 */
class SessionIssuer {
  readonly stats: SessionTokenServerStats = {
    logins: 0,
    refreshes: 0,
    rejectedLogins: 0,
    rejectedRefreshes: 0,
    refreshTokenReuse: 0,
    requests: 0,
  };
  readonly #state: TokenState;
  readonly #options: SessionTokenServerOptions;
  /** The demo's outage switch is on: token requests get 503. */
  #down = false;
  readonly now: () => number;

  constructor(options: SessionTokenServerOptions) {
    this.#options = options;
    this.now = options.now ?? Date.now;
    this.#state = {
      accessTokens: new Map(),
      refreshTokens: new Map(),
      usedRefreshTokens: new Set(),
      lifetimeSeconds: options.lifetimeSeconds,
    };
  }

  /** The server's clock: the local one plus the configured skew (for `Date` and absolute expirations). */
  serverNow(): Date {
    return new Date(this.now() + (this.#options.clockSkewMs ?? 0));
  }

  async route(req: IncomingMessage): Promise<Reply> {
    const [path, query = ''] = (req.url ?? '/').split('?', 2);
    if (path === OUTAGE_PATH && this.#options.outageSwitch === true && req.method === 'POST') {
      this.#down = new URLSearchParams(query).get('on') === '1';
      return { status: 200, body: { success: true, outage: this.#down } };
    }
    if (path !== '/auth/login' && path !== '/auth/refresh') return failure(404, 'not found');
    if (req.method !== 'POST') return failure(405, 'method not allowed');
    // Down as a gateway answers, not as the API: no `success: false` (that is a rejection of the
    // credentials, which a client does not retry), so the sidecar sees a server fault and retries.
    if (this.#down) return { status: 503, body: { message: 'token server down (the demo outage switch is on)' } };
    const body = await readJsonObject(req);
    if (body === undefined) return failure(400, 'bad request');
    return path === '/auth/login' ? this.#login(body) : this.#refresh(body);
  }

  isValidToken(token: string): boolean {
    const expiresAt = this.#state.accessTokens.get(token);
    return expiresAt !== undefined && this.now() < expiresAt;
  }

  setLifetime(seconds: number): void {
    this.#state.lifetimeSeconds = seconds;
  }

  #login(body: JsonBody): Reply {
    if (!credentialsMatch(body, this.#options)) {
      this.stats.rejectedLogins++;
      return failure(401, 'invalid credentials');
    }
    this.stats.logins++;
    return { status: 200, body: this.#issue(randomUUID()) };
  }

  #refresh(body: JsonBody): Reply {
    const presented = body.refreshToken;
    if (typeof presented !== 'string' || presented === '') return failure(400, 'bad request');
    const grant = this.#state.refreshTokens.get(presented);
    if (grant === undefined) {
      this.stats.rejectedRefreshes++;
      if (!this.#state.usedRefreshTokens.has(presented)) return failure(401, 'unknown refresh token');
      this.stats.refreshTokenReuse++;
      return failure(401, 'refresh token already used');
    }
    // Single use: the presented token is spent whatever happens next.
    this.#state.refreshTokens.delete(presented);
    rememberUsed(this.#state.usedRefreshTokens, presented);
    if (grant.expiresAt <= this.now()) {
      this.stats.rejectedRefreshes++;
      return failure(401, 'refresh token expired');
    }
    this.stats.refreshes++;
    return { status: 200, body: this.#issue(grant.guid) };
  }

  #issue(guid: string): JsonBody {
    const state = this.#state;
    const issuedAt = this.now();
    const lifetimeMs = state.lifetimeSeconds * 1000;
    const token = randomUUID();
    const refreshToken = randomUUID();
    pruneExpired(state.accessTokens, issuedAt, (expiresAt) => expiresAt);
    pruneExpired(state.refreshTokens, issuedAt, (grant) => grant.expiresAt);
    state.accessTokens.set(token, issuedAt + lifetimeMs);
    state.refreshTokens.set(refreshToken, { expiresAt: issuedAt + REFRESH_TOKEN_LIFETIME_MS, guid });
    const serverTime = this.serverNow().getTime();
    const body: JsonBody = {
      success: true,
      guid,
      token,
      tokenExpiration: isoLikeSeeds(serverTime + lifetimeMs),
      tokenLifetime: state.lifetimeSeconds,
      refreshToken,
      refreshTokenExpiration: isoLikeSeeds(serverTime + REFRESH_TOKEN_LIFETIME_MS),
    };
    if (this.#options.omitLifetime) delete body.tokenLifetime;
    else if ('lifetimeField' in this.#options) body.tokenLifetime = this.#options.lifetimeField;
    return body;
  }
}

/** Where the demo's outage switch is (with `outageSwitch`). */
const OUTAGE_PATH = '/demo/outage';

export async function startSessionTokenServer(options: SessionTokenServerOptions): Promise<SessionTokenServer> {
  const issuer = new SessionIssuer(options);
  const server = createServer((req, res) => {
    issuer.stats.requests++;
    void issuer
      .route(req)
      .catch((): Reply => failure(500, 'internal error'))
      .then((reply) => sendJson(res, reply, issuer.serverNow()));
  });
  await listen(server, { host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  const url = serverUrl(server);
  return {
    url,
    loginUrl: `${url}/auth/login`,
    refreshUrl: `${url}/auth/refresh`,
    ...(options.outageSwitch === true ? { outageUrl: `${url}${OUTAGE_PATH}` } : {}),
    stats: issuer.stats,
    isValidToken: (token) => issuer.isValidToken(token),
    setLifetime: (seconds) => issuer.setLifetime(seconds),
    close: () => closeServer(server, { force: true }),
  };
}

function failure(status: number, message: string): Reply {
  return { status, body: { success: false, message } };
}

function credentialsMatch(body: JsonBody, options: SessionTokenServerOptions): boolean {
  const userOk = typeof body.username === 'string' && sameSecret(body.username, options.username);
  const passwordOk = typeof body.password === 'string' && sameSecret(body.password, options.password);
  const accountOk = options.accountId === undefined || body.account_id === options.accountId;
  return userOk && passwordOk && accountOk;
}

/** Constant-time comparison, so even the demo does not teach timing leaks. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The seeds write `2018-04-01T21:39:12+00:00`; parsers must cope with that form. */
function isoLikeSeeds(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, '+00:00');
}

/** Drops expired entries from the oldest end, then the oldest live ones beyond the cap. */
function pruneExpired<V>(entries: Map<string, V>, nowMs: number, expiryOf: (value: V) => number): void {
  for (const [key, value] of entries) {
    if (expiryOf(value) > nowMs && entries.size < MAX_LIVE_TOKENS) break;
    entries.delete(key);
  }
}

function rememberUsed(used: Set<string>, token: string): void {
  used.add(token);
  for (const oldest of used) {
    if (used.size <= MAX_USED_REFRESH_TOKENS) break;
    used.delete(oldest);
  }
}

/** Reads a bounded JSON body; anything but a JSON object yields undefined. */
async function readJsonObject(req: IncomingMessage): Promise<JsonBody | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Drain an oversized body rather than abort it, so the client still reads our 400.
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size <= MAX_BODY_BYTES) chunks.push(buffer);
  }
  if (size > MAX_BODY_BYTES) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as JsonBody) : undefined;
  } catch {
    return undefined;
  }
}

function sendJson(res: ServerResponse, reply: Reply, serverTime: Date): void {
  const payload = JSON.stringify(reply.body);
  // An explicit Date header stops Node from writing its own (unskewed) one.
  res.writeHead(reply.status, {
    date: serverTime.toUTCString(),
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
  });
  res.end(payload);
}
