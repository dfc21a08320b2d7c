import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AccountConfig } from '../config/resolve.js';
import type { TlsOptions } from '../config/tls.js';
import type { EgressProxy } from '../config/egress.js';
import type { Dispatcher } from 'undici';
import type { TokenManager } from '../tokens/token-manager.js';
import type { ActiveToken } from '../tokens/active-token.js';
import { TokenInjector } from './bearer.js';
import type { ConnectionSlots } from './connection-slots.js';
import { ACCOUNT_HEADER } from './route.js';
import { API_KEY_HEADER } from './inbound.js';
import type { TrustedProxies } from './trusted-proxies.js';
import type { ProxyMetrics } from './types.js';

/** What the data plane sends an account's requests on: a Pool to the upstream, or an agent through a proxy (E6). */
export type UpstreamPool = Pick<Dispatcher, 'dispatch' | 'destroy'>;

/** Everything the data plane needs about one account, built once at start-up. */
export interface UpstreamAccount {
  name: string;
  isDefault: boolean;
  route: AccountConfig['route'];
  upstream: URL;
  /** The upstream's base path (joinUpstreamPath drops a trailing slash). */
  basePath: string;
  manager: TokenManager;
  metrics: ProxyMetrics;
  /** Keep-alive connections to the upstream (F4), `connections` of them at most (R10). */
  pool: UpstreamPool;
  /** E6: the proxy the upstream is reached through, or undefined (direct). */
  proxy: EgressProxy | undefined;
  /** R10: who may use a connection of the pool now, and who waits (at most `timeouts.queue`). */
  slots: ConnectionSlots;
  retryOn: ReadonlySet<number>;
  /** Largest request body kept for a replay after a `retryOn` answer (T8). */
  replayMaxBody: number;
  timeouts: AccountConfig['timeouts'];
  /** TLS options for the token endpoint and WebSocket upgrades (same trust as the agent). */
  tls: TlsOptions;
  /** E5: where the token goes in each upstream request. */
  inject: TokenInjector;
}

/** The default placement: `Authorization: Bearer <token>`. */
export const AUTHORIZATION_HEADER = new TokenInjector({ header: 'authorization', format: '{type} {token}' });

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the sidecar's own: never forwarded (F1). */
const DROPPED_REQUEST_HEADERS = new Set([
  // undici frames the body itself; Node's server has already answered any 100-continue.
  'transfer-encoding',
  'expect',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'host',
  'authorization',
  ACCOUNT_HEADER,
  API_KEY_HEADER,
  // Set by the sidecar itself (S2), from the client's own only when it is a trusted proxy.
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** What Node refuses in a reason phrase (its own `checkInvalidHeaderChar`); undici's parser lets more through. */
const UNWRITABLE_REASON = /[^\t\x20-\x7e\x80-\xff]/;
const PLAIN_REASON = /^[\t\x20-\x7e]*$/;

/**
 * R3: the upstream's reason phrase as the bytes it sent, for Node to write unchanged (Node writes a
 * head as latin1: one character, one byte). undici decodes the phrase as UTF-8, so it is encoded
 * back; one that was not valid UTF-8 (decoded with U+FFFD, its bytes lost) or that Node cannot
 * write (control characters) gives undefined: Node's standard phrase.
 */
export function clientReasonPhrase(phrase: string | undefined): string | undefined {
  if (phrase === undefined || PLAIN_REASON.test(phrase)) return phrase;
  if (phrase.includes('\ufffd')) return undefined;
  const bytes = Buffer.from(phrase, 'utf8').toString('latin1');
  return UNWRITABLE_REASON.test(bytes) ? undefined : bytes;
}

/**
 * R3 (RFC 9110 §6.4.1): an answer to HEAD, a 204 and a 304 never have a body, whatever their
 * Content-Length says (for HEAD and 304 it describes the resource, not this message).
 */
export function answerHasNoBody(method: string, statusCode: number): boolean {
  return method === 'HEAD' || statusCode === 204 || statusCode === 304;
}

/** How one request's upstream head is built besides the token: upgrades, and whose forwarding headers count. */
export interface UpstreamHeadOptions {
  /** Keep `Upgrade` (and say `Connection: upgrade`): a WebSocket upgrade. */
  keepUpgrade?: boolean;
  /** S2: clients whose forwarding headers are kept (default: none). */
  trustedProxies?: TrustedProxies;
  /** E5: where the token goes (default: `Authorization: Bearer <token>`). */
  inject?: TokenInjector;
  /** E4: the upstream request target (path and query), for the DPoP proof's `htu`. */
  targetPath?: string;
}

/**
 * S2: the headers a client uses to say where a request came from. From a client that is not a
 * trusted proxy they are dropped: an upstream must not log or authorize on an address the client made up.
 */
function isForwardingHeader(name: string): boolean {
  return name.startsWith('x-forwarded-') || CLIENT_ADDRESS_HEADERS.has(name);
}

/** `Forwarded`, and the client-address headers CDNs and load balancers set, read first by some frameworks (npm request-ip). */
const CLIENT_ADDRESS_HEADERS: ReadonlySet<string> = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'fastly-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
]);

/**
 * F1: the client's Authorization is replaced, sidecar and hop-by-hop headers removed, Host is
 * the upstream's. Headers named in Connection are hop-by-hop too. Framing headers other than
 * Content-Length are dropped: the transport frames the body. S2: the client's `Forwarded`,
 * `X-Real-IP`, `X-Forwarded-*` and other client-address headers (`X-Client-IP`, `True-Client-IP`,
 * ...) are dropped and the sidecar's own set (X-Forwarded-For the
 * client address, X-Forwarded-Proto `http`, X-Forwarded-Host the client's Host); a trusted proxy's
 * are kept, its X-Forwarded-For (and a Forwarded it sent) appended to, its X-Forwarded-Proto/Host kept where it sent them.
 * The token goes where `options.inject` says (E5: a header, replacing the client's own value of
 * it; Authorization by default). One pass over the client's headers. Throws
 * TokenNotHeaderSafeError (R1) rather than write a token that is not header-safe.
 */
export function upstreamRequestHeaders(
  req: IncomingMessage,
  upstream: URL,
  token: ActiveToken,
  options: UpstreamHeadOptions = {},
): Record<string, string | string[]> {
  const incoming = req.headers;
  const named = connectionTokens(incoming.connection);
  const remote = req.socket.remoteAddress;
  const trusted = options.trustedProxies?.trusts(remote) ?? false;
  const headers: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name) || named?.has(name)) continue;
    if (!trusted && isForwardingHeader(name)) continue;
    headers[name] = value;
  }
  if (options.keepUpgrade === true) {
    headers.connection = 'upgrade';
    if (incoming.upgrade !== undefined) headers.upgrade = incoming.upgrade;
  }
  headers.host = upstream.host;
  const inject = options.inject ?? AUTHORIZATION_HEADER;
  if (inject.dpop === undefined) inject.writeHeader(headers, token);
  else inject.writeHeader(headers, token, dpopTarget(req.method, upstream, options.targetPath));
  setForwardedFor(headers, remote, trusted ? listValue(incoming['x-forwarded-for']) : undefined);
  if (trusted && remote !== undefined && incoming.forwarded !== undefined)
    headers.forwarded = `${listValue(incoming.forwarded) ?? ''}, for=${forwardedNode(remote)}`;
  const proto = trusted ? incoming['x-forwarded-proto'] : undefined;
  headers['x-forwarded-proto'] = proto ?? 'http';
  const host = (trusted ? incoming['x-forwarded-host'] : undefined) ?? incoming.host;
  if (host !== undefined) headers['x-forwarded-host'] = host;
  return headers;
}

/** E4: the proof's `htm` and `htu` (RFC 9449 §4.2: the upstream URL without query and fragment). */
function dpopTarget(method: string | undefined, upstream: URL, targetPath = '/'): { htm: string; htu: string } {
  const mark = targetPath.indexOf('?');
  return { htm: method ?? 'GET', htu: upstream.origin + (mark === -1 ? targetPath : targetPath.slice(0, mark)) };
}

/** RFC 7239 §6: an IPv6 address as a `for=` node is bracketed and quoted. */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address;
}

/** A list header sent more than once is one list (RFC 9110 §5.3). */
function listValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** X-Forwarded-For: a trusted proxy's list with the client address appended, else the client address alone. */
function setForwardedFor(
  headers: Record<string, string | string[]>,
  remote: string | undefined,
  prior: string | undefined,
): void {
  if (remote !== undefined) headers['x-forwarded-for'] = prior === undefined ? remote : `${prior}, ${remote}`;
  else if (prior !== undefined) headers['x-forwarded-for'] = prior;
}

/** The upstream's answer headers as the client gets them: hop-by-hop ones dropped, then `scrub` (E5) applied. */
export function clientResponseHeaders(
  upstream: IncomingHttpHeaders,
  scrub?: (headers: OutgoingHttpHeaders) => void,
): OutgoingHttpHeaders {
  const named = connectionTokens(upstream.connection);
  const headers: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    if (DROPPED_RESPONSE_HEADERS.has(name) || named?.has(name)) continue;
    headers[name] = upstream[name];
  }
  scrub?.(headers);
  return headers;
}

/**
 * Headers a `Connection` header may never remove: dropping a framing header would let the body
 * be read upstream as a second request (request smuggling). Requests that try are refused.
 */
export const FRAMING_HEADERS: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/** What nearly every client sends: nothing to split or look up (hot path). */
const PLAIN_CONNECTION_VALUES: ReadonlySet<string> = new Set(['keep-alive', 'Keep-Alive', 'close', 'Close']);

/** The lower-cased names listed in a `Connection` header; undefined for none or a plain keep-alive/close. */
function connectionNames(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined || (typeof value === 'string' && PLAIN_CONNECTION_VALUES.has(value))) return undefined;
  // A header sent twice arrives as an array (undici): its lists are one list (RFC 9110 §5.3).
  return (typeof value === 'string' ? value : value.join(','))
    .toLowerCase()
    .split(',')
    .map((token) => token.trim());
}

/** The header names listed in `Connection` (hop-by-hop), never a framing header. */
export function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  const tokens = connectionNames(value)?.filter(
    (token) =>
      token !== '' && token !== 'close' && token !== 'keep-alive' && token !== 'upgrade' && !FRAMING_HEADERS.has(token),
  );
  return tokens === undefined || tokens.length === 0 ? undefined : new Set(tokens);
}

/** A reason to refuse a request whose `Connection` header names a framing header, or undefined. */
export function connectionHeaderProblem(value: string | undefined): string | undefined {
  const named = connectionNames(value)?.find((token) => FRAMING_HEADERS.has(token));
  return named === undefined ? undefined : `the Connection header may not name ${named}`;
}

/**
 * Sends a response head now, before any body. Not `flushHeaders()`: it writes the head as UTF-8,
 * so a header value's obs-text bytes (kept by Node as latin1 characters) would reach the client
 * re-encoded; a write of nothing in latin1 sends the head byte for byte (R3). An answer that may
 * have no body (HEAD, 204, 304) ignores the write and sends its head when it ends.
 */
export function sendHeadNow(res: ServerResponse): void {
  res.write('', 'latin1');
}

/** A held answer (a rejection whose replay did not happen) sent whole, with its length (R3: none to HEAD). */
export function sendHeldAnswer(
  req: IncomingMessage,
  res: ServerResponse,
  answer: { statusCode: number; statusMessage: string | undefined; headers: IncomingHttpHeaders },
  body: Buffer,
): void {
  if (res.destroyed) return;
  const headers = clientResponseHeaders(answer.headers);
  // R3: an answer with no body (to HEAD) keeps the Content-Length the upstream sent.
  if (!answerHasNoBody(req.method ?? 'GET', answer.statusCode)) headers['content-length'] = body.length;
  res.writeHead(answer.statusCode, answer.statusMessage, headers);
  res.end(body);
}
