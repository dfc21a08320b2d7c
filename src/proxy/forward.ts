import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../util/logger.js';
import { describeNetworkError } from '../util/net-errors.js';
import type { ActiveToken } from '../tokens/active-token.js';
import { TokenUnavailableError } from '../tokens/types.js';
import { TokenNotHeaderSafeError } from './bearer.js';
import { SIDECAR_ERRORS, sendError, writeRawError, type SidecarErrorCode } from './errors.js';
import type { InboundPolicy } from './inbound.js';
import { joinUpstreamPath, pathProblem, splitOriginForm, targetProblem } from './paths.js';
import { responseOnRawSocket } from './raw-socket.js';
import { ReplayableBody } from './replayable-body.js';
import type { Router } from './route.js';
import type { Transport, UpstreamAnswer, UpstreamCall } from './transport.js';
import type { ProxyMetrics } from './types.js';
import { forwardUpgrade } from './upgrade.js';
import { answerHasNoBody, clientResponseHeaders, connectionHeaderProblem, upstreamRequestHeaders, type UpstreamAccount } from './upstream.js';

export interface DataPlaneOptions {
  router: Router<UpstreamAccount>;
  inbound: InboundPolicy;
  /** Metrics for requests refused before an account was chosen. */
  unrouted: ProxyMetrics;
  logger: Logger;
  clientIdleTimeoutMs: number;
  /** The main data-plane listener is a unix socket (clients have no address). */
  unixSocket: boolean;
  transport: Transport;
}

/** What the sidecar answers itself instead of an upstream answer (F5). */
interface Refusal {
  code: SidecarErrorCode;
  message: string;
  account?: UpstreamAccount;
  /** Sent as `Retry-After` (a 503 token_unavailable, T7). */
  retryAfterSeconds?: number;
}

type Admission = { account: UpstreamAccount; targetPath: string } | Refusal;

/**
 * The data plane. Each request passes, in order: inbound check → request-target and path
 * rules → route → token → send → stream back. No Express, no middleware chain (hot path).
 *
 * No input may crash the process (§9): every entry point (request, upgrade, CONNECT) and every
 * continuation it schedules (a token that arrives later, a replay, an answer passed on) runs
 * inside a fence that answers the client (a JSON error of F5, or a cut connection once a head
 * went out) and logs what was thrown, instead of letting it reach `uncaughtException`.
 */
export class DataPlane {
  readonly #o: DataPlaneOptions;
  #draining = false;
  #closeIdleConnections: () => void = () => undefined;

  readonly #transport: Transport;

  constructor(options: DataPlaneOptions) {
    this.#o = options;
    this.#transport = options.transport;
  }

  /** The request listener of a data-plane server; `listenerAccount` is set on an account's own port. */
  handleRequest(req: IncomingMessage, res: ServerResponse, listenerAccount?: UpstreamAccount): void {
    const inbound: InboundRequest = { req, res, started: performance.now(), account: undefined, exchange: undefined };
    try {
      this.#serveRequest(inbound, listenerAccount);
    } catch (error) {
      this.#answerFailure(inbound, error);
    }
  }

  #serveRequest(inbound: InboundRequest, listenerAccount: UpstreamAccount | undefined): void {
    const { req, res } = inbound;
    const socket = req.socket as BusySocket;
    socket[IN_FLIGHT] = (socket[IN_FLIGHT] ?? 0) + 1;
    // One listener per request: it ends the exchange however it ends (a client gone first is 499).
    res.once('close', () => this.#contain('finishing a request', inbound.account, () => this.#finish(inbound)));
    if (this.#draining) res.setHeader('connection', 'close');
    const admission = this.#admit(req, listenerAccount);
    inbound.account = admission.account;
    if ('code' in admission) {
      this.#refuse(res, admission);
      return;
    }
    const { account, targetPath } = admission;
    const token = account.manager.current();
    if (token !== undefined) {
      this.#send(inbound, account, token, targetPath);
      return;
    }
    // T7: no valid token yet (cold start, or expired with no replacement): wait, then 503.
    account.manager.waitForToken().then(
      (fresh) => {
        if (!res.destroyed) this.#fenced(inbound, () => this.#send(inbound, account, fresh, targetPath));
      },
      (error: unknown) => this.#fenced(inbound, () => this.#refuse(res, tokenRefusal(account, error))),
    );
  }

  #finish(inbound: InboundRequest): void {
    const { req, res, account } = inbound;
    const socket = req.socket as BusySocket;
    socket[IN_FLIGHT] = (socket[IN_FLIGHT] ?? 1) - 1;
    // A client that goes away takes its upstream request with it.
    if (!res.writableFinished) inbound.exchange?.upstream?.abort();
    inbound.exchange?.body?.release();
    const status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST;
    const durationMs = performance.now() - inbound.started;
    (account?.metrics ?? this.#o.unrouted).observe(status, durationMs / 1000);
    // Request logs only at debug (issue 8): the path without its query (which may carry a key); never headers.
    if (this.#o.logger.isLevelEnabled('debug')) {
      this.#o.logger.debug({ account: account?.name, method: req.method, path: (req.url ?? '').split('?', 1)[0], status, durationMs: Math.round(durationMs) }, 'proxied request');
    }
    if (this.#draining) setImmediate(this.#closeIdleConnections);
  }

  /**
   * Shutdown: answers from now on say `connection: close`, and every keep-alive socket that
   * goes idle is closed at once, so draining ends when the last in-flight request does.
   */
  startDraining(closeIdleConnections: () => void): void {
    this.#draining = true;
    this.#closeIdleConnections = closeIdleConnections;
  }

  /** F3: the sidecar is not a forward proxy; CONNECT gets 405 and no connection is opened. */
  handleConnect(_req: IncomingMessage, socket: Duplex): void {
    this.#fencedRaw({ socket, started: performance.now(), account: undefined }, () => {
      // Node hands the socket over without an error listener: a reset must not crash the process.
      socket.on('error', (error) => this.#o.logger.debug({ err: error }, 'client socket error on CONNECT'));
      writeRawError(socket, 'method_not_allowed', 'CONNECT is not supported: bearer-sidecar is not a forward proxy');
      this.#o.unrouted.observe(SIDECAR_ERRORS.method_not_allowed.status, 0);
    });
  }

  /** WebSocket upgrades pass the same checks as HTTP and carry the token (F2). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, listenerAccount?: UpstreamAccount): void {
    const client: RawClient = { socket, started: performance.now(), account: undefined };
    this.#fencedRaw(client, () => {
      socket.on('error', (error) => this.#o.logger.debug({ err: error }, 'client socket error during upgrade'));
      if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
        this.#serveUpgradeAsRequest(req, socket, listenerAccount);
        return;
      }
      const admission = this.#admit(req, listenerAccount);
      client.account = admission.account;
      if ('code' in admission) {
        this.#refuseRaw(client, admission);
        return;
      }
      const upgrade: PendingUpgrade = { client, req, head, account: admission.account, targetPath: admission.targetPath };
      const token = upgrade.account.manager.current();
      if (token !== undefined) {
        this.#upgrade(upgrade, token);
        return;
      }
      upgrade.account.manager.waitForToken().then(
        (fresh) => this.#fencedRaw(client, () => this.#upgrade(upgrade, fresh)),
        (error: unknown) => this.#fencedRaw(client, () => this.#refuseRaw(client, tokenRefusal(upgrade.account, error))),
      );
    });
  }

  /** Sends the upgrade upstream with the token; the client gets the 101 and the socket, or the refusal. */
  #upgrade(upgrade: PendingUpgrade, token: ActiveToken): void {
    const { client, account } = upgrade;
    if (client.socket.destroyed) return;
    forwardUpgrade({
      account,
      req: upgrade.req,
      socket: client.socket,
      head: upgrade.head,
      path: upgrade.targetPath,
      headers: upstreamRequestHeaders(upgrade.req, account.upstream, token, true),
      onAnswer: (status) => this.#contain('counting an upgrade', account, () => account.metrics.observe(status, secondsSince(client.started))),
      onError: (error) =>
        this.#fencedRaw(client, () => {
          const refusal = upstreamFailure(account, error, undefined);
          this.#o.logger.debug({ account: account.name, code: error.code }, refusal.message);
          this.#refuseRaw(client, refusal);
        }),
    });
  }

  /** Answers a raw-socket client with a JSON error (F5) and counts it. */
  #refuseRaw(client: RawClient, refusal: Refusal): void {
    writeRawError(client.socket, refusal.code, refusal.message, client.account?.name);
    (client.account?.metrics ?? this.#o.unrouted).observe(SIDECAR_ERRORS[refusal.code].status, secondsSince(client.started));
  }

  /**
   * Node hands every request with an Upgrade header to the 'upgrade' event. Upgrades other than
   * WebSocket (Java's HttpClient tries `h2c`) are served as the plain HTTP/1.1 requests they
   * also are, when they carry no body; the Upgrade offer is simply not taken up.
   */
  #serveUpgradeAsRequest(req: IncomingMessage, socket: Duplex, listenerAccount: UpstreamAccount | undefined): void {
    const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      writeRawError(socket, 'bad_request', `an "Upgrade: ${String(req.headers.upgrade).slice(0, 40)}" request with a body is not supported; send it without Upgrade`);
      return;
    }
    delete req.headers.upgrade;
    req.headers.connection = 'close';
    // The parser stopped at the upgrade; the (empty) body ends here.
    req.push(null);
    this.handleRequest(req, responseOnRawSocket(req, socket), listenerAccount);
  }

  /** Nothing of its own to release: upgraded connections are client sockets, closed with the servers, each taking its upstream socket along. */
  close(): void {}

  #admit(req: IncomingMessage, listenerAccount: UpstreamAccount | undefined): Admission {
    const forbidden = this.#o.inbound.check(req, listenerAccount === undefined && this.#o.unixSocket);
    if (forbidden !== undefined) return { code: 'forbidden', message: forbidden };
    const target = splitOriginForm(req.url ?? '');
    if (target === undefined) return { code: 'bad_request', message: 'only origin-form request targets (/path) are accepted: bearer-sidecar is not a forward proxy' };
    const problem = targetProblem(req.url ?? '') ?? pathProblem(target.path) ?? connectionHeaderProblem(req.headers.connection);
    if (problem !== undefined) return { code: 'bad_request', message: problem };
    const routed = this.#o.router.route(req, target.path, listenerAccount);
    if ('error' in routed) return { code: 'no_route', message: routed.error };
    return { account: routed.account, targetPath: joinUpstreamPath(routed.account.basePath, routed.rest) + target.query };
  }

  #refuse(res: ServerResponse, refusal: Refusal): void {
    sendError(res, refusal.code, refusal.message, refusal.account?.name, retryAfterOf(refusal));
  }

  /** Sends the request upstream with the token and streams the answer back; T8 may replay it once. */
  #send(inbound: InboundRequest, account: UpstreamAccount, token: ActiveToken, targetPath: string): void {
    const { req, res } = inbound;
    const exchange: Exchange = { inbound, req, res, account, targetPath, upstream: undefined, body: undefined, retriedStaleSocket: false };
    inbound.exchange = exchange;
    // A request that declared no body is sent with none (Node reads its empty end by itself).
    if (!declaresBody(req)) {
      this.#open(exchange, token, undefined, (answer) => this.#onFirstAnswer(exchange, token, answer));
      return;
    }
    // A stalled upload must not hold a socket forever; once the body is in, streams may be quiet.
    req.socket.setTimeout(this.#o.clientIdleTimeoutMs);
    req.once('end', () => req.socket.setTimeout(0));
    const body = new ReplayableBody(req, account.replayMaxBody);
    exchange.body = body;
    this.#open(exchange, token, body.stream(), (answer) => this.#onFirstAnswer(exchange, token, answer));
  }

  /** Opens one upstream request with the token; failures become 502/504 (F5), an unusable token 503 (R1). */
  #open(exchange: Exchange, token: ActiveToken, body: UpstreamCall['body'], onAnswer: (answer: UpstreamAnswer) => void): void {
    const { req, account } = exchange;
    exchange.upstream = this.#transport({
      account,
      method: req.method ?? 'GET',
      path: exchange.targetPath,
      headers: upstreamRequestHeaders(req, account.upstream, token),
      body,
      // Passing an answer on runs inside the transport's callbacks: a throw there is fenced here.
      onAnswer: (answer) => this.#fenced(exchange.inbound, () => onAnswer(answer)),
      onError: ({ error, timedOut, reused }) =>
        this.#fenced(exchange.inbound, () => {
          const { res } = exchange;
          if (res.headersSent || res.destroyed) {
            res.destroy();
            return;
          }
          if (this.#retryOnFreshSocket(exchange, error, reused, token, onAnswer)) return;
          const refusal = upstreamFailure(account, error, timedOut);
          this.#o.logger.debug({ account: account.name, code: error.code }, refusal.message);
          this.#refuse(res, refusal);
        }),
    });
  }

  /**
   * A pooled connection the upstream closed while idle fails at once on reuse. An idempotent
   * request that is whole in hand is sent once more on a fresh connection (what browsers do).
   */
  #retryOnFreshSocket(exchange: Exchange, error: NodeJS.ErrnoException, reused: boolean, token: ActiveToken, onAnswer: (answer: UpstreamAnswer) => void): boolean {
    const stale = reused && (error.code === 'ECONNRESET' || error.code === 'EPIPE' || error.code === 'UND_ERR_SOCKET');
    if (!stale || exchange.retriedStaleSocket || !IDEMPOTENT_METHODS.has(exchange.req.method ?? '') || !replayable(exchange)) return false;
    exchange.retriedStaleSocket = true;
    // Out of undici's error callback first: the pool is done with the dead connection before the
    // retry picks one (otherwise the retry opens a connection and a later request another).
    setImmediate(() => {
      if (!exchange.res.destroyed) this.#fenced(exchange.inbound, () => this.#open(exchange, token, exchange.body?.contents(), onAnswer));
    });
    return true;
  }

  /** T8: an answer in `retryOn` to the token in use asks for a new token and replays the request once. */
  #onFirstAnswer(exchange: Exchange, token: ActiveToken, answer: UpstreamAnswer): void {
    const { account } = exchange;
    const status = answer.statusCode;
    if (!account.retryOn.has(status)) {
      this.#streamBack(exchange, answer);
      return;
    }
    account.metrics.upstreamRejection(status);
    const replacement = account.manager.replacementFor(token);
    // Handled from now on: it may reject at once (no token in time) while the rejection's body is
    // still arriving, and an unhandled rejection would end the process.
    replacement.catch(() => undefined);
    if (!replayable(exchange)) {
      account.metrics.replay('skipped');
      this.#streamBack(exchange, answer);
      return;
    }
    answer.body.hold(MAX_HELD_REJECTION_BYTES, (held) =>
      this.#fenced(exchange.inbound, () => {
        // The client went away while the rejection was held: nothing to replay or count (a 499).
        if (exchange.res.destroyed) return;
        if (held === undefined && answer.body.failed) {
          // R3: the rejection broke off before it was whole: nothing of it went out yet.
          account.metrics.replay('skipped');
          this.#refuse(exchange.res, brokenAnswer(account));
          return;
        }
        if (held === undefined) {
          // Too large to hold: it goes through as it is, with no replay.
          account.metrics.replay('skipped');
          this.#streamBack(exchange, answer);
          return;
        }
        replacement.then(
          (fresh) => this.#fenced(exchange.inbound, () => this.#replay(exchange, fresh)),
          () =>
            this.#fenced(exchange.inbound, () => {
              // No new token in time: the upstream's answer is passed through unchanged.
              account.metrics.replay('no_token');
              this.#sendHeld(exchange, answer, held);
            }),
        );
      }),
    );
  }

  #replay(exchange: Exchange, token: ActiveToken): void {
    if (exchange.res.destroyed) return;
    const { account } = exchange;
    this.#open(exchange, token, exchange.body?.contents(), (answer) => {
      const status = answer.statusCode;
      if (account.retryOn.has(status)) {
        account.metrics.upstreamRejection(status);
        account.metrics.replay('rejected_again');
        account.manager.replacementFor(token).catch(() => undefined);
      } else {
        account.metrics.replay('success');
      }
      this.#streamBack(exchange, answer);
    });
  }

  #streamBack(exchange: Exchange, answer: UpstreamAnswer): void {
    const { res, account } = exchange;
    const writeHead = () => {
      if (this.#draining) res.setHeader('connection', 'close');
      res.writeHead(answer.statusCode, answer.statusMessage, clientResponseHeaders(answer.headers));
    };
    // A stream of unknown length (SSE) gets its head at once; a sized answer leaves with its first bytes.
    if (answer.headers['content-length'] === undefined) {
      writeHead();
      sendHeadNow(res);
      answer.body.sendTo(res);
      return;
    }
    // R3: a sized answer that breaks off before its first byte is a 502, not a head and a cut.
    answer.body.sendTo(res, {
      write: writeHead,
      failed: (error) => (error === undefined ? this.#refuse(res, brokenAnswer(account)) : this.#answerFailure(exchange.inbound, error)),
    });
  }

  #sendHeld(exchange: Exchange, answer: UpstreamAnswer, body: Buffer): void {
    const { req, res } = exchange;
    if (res.destroyed) return;
    const headers = clientResponseHeaders(answer.headers);
    // R3: an answer with no body (to HEAD) keeps the Content-Length the upstream sent.
    if (!answerHasNoBody(req.method ?? 'GET', answer.statusCode)) headers['content-length'] = body.length;
    res.writeHead(answer.statusCode, answer.statusMessage, headers);
    res.end(body);
  }

  /**
   * Runs `work` for a request; whatever it throws answers the client (F5: 503 for a token that is
   * not header-safe, else 502; a cut connection once a head went out) and is logged.
   */
  #fenced(inbound: InboundRequest, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.#answerFailure(inbound, error);
    }
  }

  #answerFailure(inbound: InboundRequest, error: unknown): void {
    const { res, account } = inbound;
    this.#contain('answering a failed request', account, () => {
      // Whatever the upstream still sends has nowhere to go.
      inbound.exchange?.upstream?.abort();
      const refusal = this.#refusalForThrow(error, account, 'request');
      // sendError cuts a response whose head already went out.
      this.#refuse(res, refusal);
    });
  }

  /** Like #fenced, for a client on a raw socket (upgrade, CONNECT): a JSON error written on it, or a cut socket. */
  #fencedRaw(client: RawClient, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.#contain('answering a failed upgrade', client.account, () => this.#refuseRaw(client, this.#refusalForThrow(error, client.account, 'upgrade')));
    }
  }

  /** What a throw becomes for the client, logged: 503 for a token that is not header-safe (R1), else 502 (F5). */
  #refusalForThrow(error: unknown, account: UpstreamAccount | undefined, entry: string): Refusal {
    if (error instanceof TokenNotHeaderSafeError && account !== undefined) {
      this.#reportUnsafeToken(account, error);
      return unsafeTokenRefusal(account, error);
    }
    this.#reportThrow(entry, account, error);
    return { code: 'upstream_unreachable', message: passOnFailureMessage(error), account };
  }

  /** Last fence, where no answer is possible any longer: what was thrown is logged, nothing more. */
  #contain(what: string, account: UpstreamAccount | undefined, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.#reportThrow(what, account, error);
    }
  }

  /** A throw on the data plane is a bug or hostile input: logged with its code, never its message (it may quote a header). */
  #reportThrow(entry: string, account: UpstreamAccount | undefined, error: unknown): void {
    this.#o.logger.error({ account: account?.name, entry, code: errorCode(error) }, `data plane: a throw was contained (${entry})`);
  }

  /** R1: logged once per token (not per request), with the reason and never the token. */
  #reportUnsafeToken(account: UpstreamAccount, error: TokenNotHeaderSafeError): void {
    if (!error.firstReport) return;
    this.#o.logger.warn({ account: account.name, reason: error.reason }, `the token of account ${account.name} is not header-safe and is never sent`);
  }
}

/** A client on a raw socket (an upgrade, a CONNECT), from its arrival to its answer. */
interface RawClient {
  socket: Duplex;
  started: number;
  /** Once routed. */
  account: UpstreamAccount | undefined;
}

/** A WebSocket upgrade that passed its checks and waits for, or has, its token. */
interface PendingUpgrade {
  client: RawClient;
  req: IncomingMessage;
  head: Buffer;
  account: UpstreamAccount;
  targetPath: string;
}

function secondsSince(started: number): number {
  return (performance.now() - started) / 1000;
}

/** One client request, from its arrival to its end, however it ends. */
interface InboundRequest {
  req: IncomingMessage;
  res: ServerResponse;
  started: number;
  /** Once routed (refusals before routing are counted as unrouted). */
  account: UpstreamAccount | undefined;
  /** Once a token is in hand and the request goes upstream. */
  exchange: Exchange | undefined;
}

/** One client request and what it has led to upstream. */
interface Exchange {
  inbound: InboundRequest;
  req: IncomingMessage;
  res: ServerResponse;
  account: UpstreamAccount;
  targetPath: string;
  /** The upstream request in progress (the first, a stale-socket retry, or the replay). */
  upstream: { abort(): void } | undefined;
  /** The request body as read and kept for a replay; undefined when the request declared none. */
  body: ReplayableBody | undefined;
  retriedStaleSocket: boolean;
}

/** A request can be sent again when it had no body, or its body is whole in hand within the bound. */
function replayable(exchange: Exchange): boolean {
  return exchange.body === undefined || exchange.body.replayable();
}

/** Requests in flight on a client connection: at shutdown, a connection with none is closed at once. */
const IN_FLIGHT = Symbol('inFlight');
type BusySocket = Socket & { [IN_FLIGHT]?: number };

export function hasRequestInFlight(socket: Socket): boolean {
  return ((socket as BusySocket)[IN_FLIGHT] ?? 0) > 0;
}

function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** nginx's code for "the client closed the connection before an answer": counted, never sent. */
const CLIENT_CLOSED_REQUEST = 499;
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** Rejection bodies are small; one larger than this is streamed through and not replayed. */
const MAX_HELD_REJECTION_BYTES = 64 * 1024;

function tokenRefusal(account: UpstreamAccount, error: unknown): Refusal {
  if (error instanceof TokenUnavailableError) {
    return { code: 'token_unavailable', message: error.message, account, retryAfterSeconds: error.retryAfterSeconds };
  }
  return { code: 'token_unavailable', message: `no valid token for account ${account.name}`, account, retryAfterSeconds: 1 };
}

function retryAfterOf(refusal: Refusal): Record<string, string> {
  return refusal.retryAfterSeconds === undefined ? {} : { 'retry-after': String(refusal.retryAfterSeconds) };
}

function upstreamFailure(account: UpstreamAccount, error: NodeJS.ErrnoException, timedOut: 'connect' | 'response' | undefined): Refusal {
  const where = `upstream ${account.upstream.origin}`;
  if (timedOut === 'connect' || error.code === 'ETIMEDOUT') {
    return { code: 'upstream_timeout', message: `${where} did not accept a connection within ${account.timeouts.connectMs}ms`, account };
  }
  if (timedOut === 'response') {
    return { code: 'upstream_timeout', message: `${where} did not answer within ${account.timeouts.responseMs}ms`, account };
  }
  return { code: 'upstream_unreachable', message: `${where}: ${describeNetworkError(error)}`, account };
}

/** R1: a token the writer refused is no valid token for the client: 503, as when none could be had (T7). */
function unsafeTokenRefusal(account: UpstreamAccount, error: TokenNotHeaderSafeError): Refusal {
  return { code: 'token_unavailable', message: `the token of account ${account.name} cannot be sent: ${error.reason}`, account, retryAfterSeconds: 1 };
}

/** The 502 message for a throw while passing a request or an answer on: its code, never its text. */
function passOnFailureMessage(error: unknown): string {
  return `bearer-sidecar could not pass this exchange on (${errorCode(error)})`;
}

function errorCode(error: unknown): string {
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.name;
  return typeof error;
}

/**
 * Sends a response head now, before any body. Not `flushHeaders()`: it writes the head as UTF-8,
 * so a header value's obs-text bytes (kept by Node as latin1 characters) would reach the client
 * re-encoded; a write of nothing in latin1 sends the head byte for byte (R3). An answer that may
 * have no body (HEAD, 204, 304) ignores the write and sends its head when it ends.
 */
/** R3: the upstream's answer broke off before anything of it reached the client. */
function brokenAnswer(account: UpstreamAccount): Refusal {
  return { code: 'upstream_unreachable', message: 'the upstream closed the connection before its answer was complete', account };
}

function sendHeadNow(res: ServerResponse): void {
  res.write('', 'latin1');
}
