import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { Tracing } from '../util/tracing.js';
import type { ActiveToken } from '../tokens/active-token.js';
import { asksForDpopNonce } from '../flows/dpop.js';
import { admit, type AdmissionRules } from './admission.js';
import { passTurn, whenTurnComes } from './client-turns.js';
import type { ReleaseSlot } from './connection-slots.js';
import { declaresBody, replayable, type Exchange, type InboundRequest } from './exchange.js';
import { brokenAnswerRefusal, busyRefusal, sendRefusal, tokenRefusal, upstreamFailureRefusal } from './refusals.js';
import type { ReplayBudget } from './replay-budget.js';
import { ReplayableBody } from './replayable-body.js';
import { requestEnded, requestStarted } from './in-flight.js';
import { logProxiedRequest } from './request-log.js';
import { ThrowFence } from './throw-fence.js';
import type { TrustedProxies } from './trusted-proxies.js';
import type { Transport, UpstreamAnswer, UpstreamCall, UpstreamFailure } from './transport.js';
import type { ProxyMetrics } from './types.js';
import { UpgradeEntry } from './upgrade-entry.js';
import {
  clientResponseHeaders,
  sendHeadNow,
  sendHeldAnswer,
  upstreamRequestHeaders,
  type UpstreamAccount,
} from './upstream.js';

export interface DataPlaneOptions extends AdmissionRules {
  /** Metrics for requests refused before an account was chosen. */
  unrouted: ProxyMetrics;
  logger: Logger;
  clientIdleTimeoutMs: number;
  transport: Transport;
  /** R9: what all T8 replay copies together may hold. */
  replayBudget: ReplayBudget;
  /** Tells whether a token that came while a request waited has expired since (T7). */
  clock: Clock;
  /** S2: clients whose forwarding headers are kept (default: none). */
  trustedProxies?: TrustedProxies;
}

/**
 * The data plane. No Express, no middleware chain (hot path): each request goes through these
 * passes, in order, each a named function below (this file reads top to bottom in that order):
 *
 *  0. whenTurnComes (client-turns.ts): pipelined requests of one connection one at a time (R9)
 *  1. admit (admission.ts): inbound check → request-target and path rules → Connection header → route
 *  2. #queueForConnection, #sendWithToken: a free upstream connection (R10), then the account's
 *     token as it is at that moment, now or once one comes (T7)
 *  3. #send, #open: the request upstream with the token (a stale pooled connection retried once)
 *  4. #onFirstAnswer: a rejection of the token replays the request once with a new one (T8)
 *  5. #streamBack, sendHeldAnswer: the answer back to the client
 *  6. #finish: counted and logged, however the request ended
 *
 * Upgrades and CONNECT enter through upgrade-entry.ts; every pass and continuation runs inside
 * the ThrowFence (throw-fence.ts, §9), and what the sidecar answers itself is in refusals.ts.
 */
export class DataPlane {
  readonly #o: DataPlaneOptions;
  readonly #transport: Transport;
  readonly #fence: ThrowFence;
  readonly #upgrades: UpgradeEntry;
  #draining = false;
  /** H3: set once tracing has started; undefined when it is off (then a request has no span either). */
  #tracing: Tracing | undefined;
  #closeIdleConnections: () => void = () => undefined;
  /** Pass 6 as one function made once: the 'close' listener passes it the request (no second closure per request). */
  readonly #finishRequest = (inbound: InboundRequest): void => this.#finish(inbound);

  constructor(options: DataPlaneOptions) {
    this.#o = options;
    this.#transport = options.transport;
    this.#fence = new ThrowFence(options.logger, options.unrouted);
    this.#upgrades = new UpgradeEntry({
      rules: options,
      unrouted: options.unrouted,
      logger: options.logger,
      fence: this.#fence,
      clock: options.clock,
      trustedProxies: options.trustedProxies,
      serveAsRequest: (req, res, listenerAccount) => this.handleRequest(req, res, listenerAccount),
    });
  }

  /** The request listener of a data-plane server; `listenerAccount` is set on an account's own port. */
  handleRequest(req: IncomingMessage, res: ServerResponse, listenerAccount?: UpstreamAccount): void {
    const inbound: InboundRequest = {
      req,
      res,
      started: performance.now(),
      account: undefined,
      exchange: undefined,
      hasTurn: false,
      slot: undefined,
      slotWait: undefined,
      span: undefined,
    };
    // H3: the path without its query (the token may be in it, E5).
    if (this.#tracing !== undefined)
      inbound.span = this.#tracing.startRequest(
        req.method ?? 'GET',
        (req.url ?? '').split('?', 1)[0] ?? '',
        req.headers,
      );
    requestStarted(req.socket);
    // One listener per request: it ends the exchange however it ends (a client gone first is 499).
    // `on`, not `once`: a response closes once, and once's wrapper and removal cost on every request.
    res.on('close', () => this.#fence.contain('finishing a request', inbound.account, this.#finishRequest, inbound));
    whenTurnComes(req.socket, () => {
      // Its client left while it waited for its turn: it was counted then; the next one goes on.
      if (res.destroyed) {
        passTurn(req.socket);
        return;
      }
      inbound.hasTurn = true;
      try {
        this.#serveRequest(inbound, listenerAccount);
      } catch (error) {
        this.#fence.answerFailure(inbound, error);
      }
    });
  }

  /** H3: proxied requests from now on are traced. */
  traceWith(tracing: Tracing): void {
    this.#tracing = tracing;
  }

  /** WebSocket upgrades pass the same checks as HTTP and carry the token (F2); other offers are served as requests. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, listenerAccount?: UpstreamAccount): void {
    this.#upgrades.handleUpgrade(req, socket, head, listenerAccount);
  }

  /** F3: the sidecar is not a forward proxy; CONNECT gets 405 and no connection is opened. */
  handleConnect(req: IncomingMessage, socket: Duplex): void {
    this.#upgrades.handleConnect(req, socket);
  }

  /** Entry, on the request's turn: admits it (pass 1) or refuses it. */
  #serveRequest(inbound: InboundRequest, listenerAccount: UpstreamAccount | undefined): void {
    const { req, res } = inbound;
    if (this.#draining) res.setHeader('connection', 'close');
    const admission = admit(req, listenerAccount, this.#o);
    inbound.account = admission.account;
    if ('code' in admission) {
      sendRefusal(res, admission);
      return;
    }
    this.#queueForConnection(inbound, admission.account, admission.targetPath);
  }

  /** Pass 2 (R10): a free connection of the account's pool now, or within `timeouts.queue`, else 503 upstream_busy. */
  #queueForConnection(
    inbound: InboundRequest,
    account: UpstreamAccount,
    targetPath: string,
    waited?: ActiveToken,
  ): void {
    const slot = account.slots.take();
    if (slot !== undefined) {
      this.#sendWithToken(inbound, account, targetPath, slot, waited);
      return;
    }
    inbound.slotWait = account.slots.wait(
      (granted) =>
        this.#fence.run(inbound, () => {
          inbound.slotWait = undefined;
          if (inbound.res.destroyed) granted();
          else this.#sendWithToken(inbound, account, targetPath, granted, waited);
        }),
      () =>
        this.#fence.run(inbound, () => {
          inbound.slotWait = undefined;
          sendRefusal(inbound.res, busyRefusal(account));
        }),
    );
  }

  /**
   * Pass 2, with a connection in hand: the token as it is now (T7: never one that expired while the
   * request queued). Without one, the connection goes back while the request waits for a token,
   * and it queues again once one came (`waited`, used unless it expired meanwhile); none in time is a 503.
   */
  #sendWithToken(
    inbound: InboundRequest,
    account: UpstreamAccount,
    targetPath: string,
    slot: ReleaseSlot,
    waited: ActiveToken | undefined,
  ): void {
    // Held by the request from here: whatever happens next, #finish gives it back.
    inbound.slot = slot;
    const token =
      account.manager.current() ??
      (waited !== undefined && waited.expiresAt > this.#o.clock.now() ? waited : undefined);
    if (token !== undefined) {
      this.#send(inbound, account, token, targetPath);
      return;
    }
    inbound.slot = undefined;
    slot();
    const { res } = inbound;
    // The token it waited for expired while it queued: once is enough (no loop), 503 with Retry-After.
    if (waited !== undefined) {
      sendRefusal(res, tokenRefusal(account, undefined));
      return;
    }
    account.manager.waitForToken().then(
      (fresh) => {
        if (!res.destroyed)
          this.#fence.run(inbound, () => this.#queueForConnection(inbound, account, targetPath, fresh));
      },
      (error: unknown) => this.#fence.run(inbound, () => sendRefusal(res, tokenRefusal(account, error))),
    );
  }

  /** Pass 3: sends the request upstream with the token, its body read as it comes and kept for a replay (T8). */
  #send(inbound: InboundRequest, account: UpstreamAccount, token: ActiveToken, targetPath: string): void {
    const { req, res } = inbound;
    const exchange: Exchange = {
      inbound,
      req,
      res,
      account,
      targetPath,
      upstream: undefined,
      body: undefined,
      retriedStaleSocket: false,
      leg: undefined, // set by #open; here so every Exchange has one shape from its start
    };
    inbound.exchange = exchange;
    // A request that declared no body is sent with none (Node reads its empty end by itself).
    if (!declaresBody(req)) {
      this.#open(exchange, token, undefined, (answer) => this.#onFirstAnswer(exchange, token, answer));
      return;
    }
    // A stalled upload must not hold a socket forever; once the body is in, streams may be quiet.
    req.socket.setTimeout(this.#o.clientIdleTimeoutMs);
    req.once('end', () => req.socket.setTimeout(0));
    const body = new ReplayableBody(req, account.replayMaxBody, this.#o.replayBudget);
    exchange.body = body;
    this.#open(exchange, token, body.stream(), (answer) => this.#onFirstAnswer(exchange, token, answer));
  }

  /** Opens one upstream request with the token (one not header-safe throws: 503, R1); the answer goes to `onAnswer`. */
  #open(
    exchange: Exchange,
    token: ActiveToken,
    body: UpstreamCall['body'],
    onAnswer: (answer: UpstreamAnswer) => void,
  ): void {
    const { req, account } = exchange;
    const headers = upstreamRequestHeaders(req, account.upstream, token, {
      trustedProxies: this.#o.trustedProxies,
      inject: account.inject,
      targetPath: exchange.targetPath,
    });
    // H3: this attempt's span, whose traceparent the upstream gets instead of the client's.
    const leg = exchange.inbound.span?.upstream(headers, account.upstream);
    exchange.leg = leg;
    exchange.upstream = this.#transport({
      account,
      method: req.method ?? 'GET',
      path: account.inject.targetWithToken(exchange.targetPath, token),
      headers,
      body,
      // Passing an answer on runs inside the transport's callbacks: a throw there is fenced here.
      onAnswer: (answer) =>
        this.#fence.run(exchange.inbound, () => {
          leg?.answered(answer.statusCode);
          account.inject.scrubAnswerHeaders(answer.headers, token);
          onAnswer(answer);
        }),
      onError: (failure) =>
        this.#fence.run(exchange.inbound, () => {
          leg?.failed(failure.error.code);
          this.#onUpstreamFailure(exchange, failure, token, onAnswer);
        }),
    });
  }

  /** No answer from upstream: 502/504 (F5), a retry on a fresh connection, or a cut once a head went out. */
  #onUpstreamFailure(
    exchange: Exchange,
    failure: UpstreamFailure,
    token: ActiveToken,
    onAnswer: (answer: UpstreamAnswer) => void,
  ): void {
    const { res, account } = exchange;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (this.#retryOnFreshSocket(exchange, failure, token, onAnswer)) return;
    const refusal = upstreamFailureRefusal(account, failure);
    this.#o.logger.debug({ account: account.name, code: failure.error.code }, refusal.message);
    sendRefusal(res, refusal);
  }

  /**
   * A pooled connection the upstream closed while idle fails at once on reuse. An idempotent
   * request that is whole in hand is sent once more on a fresh connection (what browsers do).
   */
  #retryOnFreshSocket(
    exchange: Exchange,
    { error, reused }: UpstreamFailure,
    token: ActiveToken,
    onAnswer: (answer: UpstreamAnswer) => void,
  ): boolean {
    const stale = reused && (error.code === 'ECONNRESET' || error.code === 'EPIPE' || error.code === 'UND_ERR_SOCKET');
    if (
      !stale ||
      exchange.retriedStaleSocket ||
      !IDEMPOTENT_METHODS.has(exchange.req.method ?? '') ||
      !replayable(exchange)
    )
      return false;
    exchange.retriedStaleSocket = true;
    // Out of undici's error callback first: the pool is done with the dead connection before the
    // retry picks one (otherwise the retry opens a connection and a later request another).
    setImmediate(() => {
      if (!exchange.res.destroyed)
        this.#fence.run(exchange.inbound, () => this.#open(exchange, token, exchange.body?.contents(), onAnswer));
    });
    return true;
  }

  /** Pass 4 (T8): an answer in `retryOn` to the token in use asks for a new token and replays the request once. */
  #onFirstAnswer(exchange: Exchange, token: ActiveToken, answer: UpstreamAnswer): void {
    const { account } = exchange;
    const status = answer.statusCode;
    if (account.inject.dpop !== undefined && this.#retryWithNonce(exchange, token, answer)) return;
    if (!account.retryOn.has(status)) {
      account.manager.tokenAccepted(token); // P1: ends an escalation series
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
      this.#fence.run(exchange.inbound, () => this.#onRejectionHeld(exchange, answer, held, replacement)),
    );
  }

  /**
   * E4: a 401 asking for a DPoP nonce is no token rejection (no refresh, not counted for T8): the
   * request goes again at once with the nonce, once, when it can be replayed; otherwise (or when
   * asked again) the answer goes to the client. False: not such an answer.
   */
  #retryWithNonce(
    exchange: Exchange,
    token: ActiveToken,
    answer: UpstreamAnswer,
    then: (next: UpstreamAnswer) => void = (next) => this.#onFirstAnswer(exchange, token, next),
  ): boolean {
    const { account } = exchange;
    if (!asksForDpopNonce(answer.statusCode, answer.headers['www-authenticate'])) return false;
    const fresh = account.inject.dpop?.takeNonce('upstream', answer.headers['dpop-nonce']) === true;
    if (exchange.nonceRetried === true || !fresh || !replayable(exchange)) {
      this.#streamBack(exchange, answer);
      return true;
    }
    exchange.nonceRetried = true;
    account.metrics.dpopNonceRetry();
    answer.body.hold(MAX_HELD_REJECTION_BYTES, (held) =>
      this.#fence.run(exchange.inbound, () => {
        if (exchange.res.destroyed) return;
        if (held === undefined && answer.body.failed) sendRefusal(exchange.res, brokenAnswerRefusal(account));
        else if (held === undefined) this.#streamBack(exchange, answer);
        else this.#open(exchange, token, exchange.body?.contents(), then);
      }),
    );
    return true;
  }

  /** T8: the rejection is in hand (or could not be held): replay it with the new token, or pass it on. */
  #onRejectionHeld(
    exchange: Exchange,
    answer: UpstreamAnswer,
    held: Buffer | undefined,
    replacement: Promise<ActiveToken>,
  ): void {
    const { account } = exchange;
    // The client went away while the rejection was held: nothing to replay or count (a 499).
    if (exchange.res.destroyed) return;
    if (held === undefined && answer.body.failed) {
      // R3: the rejection broke off before it was whole: nothing of it went out yet.
      account.metrics.replay('skipped');
      sendRefusal(exchange.res, brokenAnswerRefusal(account));
      return;
    }
    if (held === undefined) {
      // Too large to hold: it goes through as it is, with no replay.
      account.metrics.replay('skipped');
      this.#streamBack(exchange, answer);
      return;
    }
    replacement.then(
      (fresh) => this.#fence.run(exchange.inbound, () => this.#replay(exchange, fresh)),
      () =>
        this.#fence.run(exchange.inbound, () => {
          // No new token in time: the upstream's answer is passed through unchanged.
          account.metrics.replay('no_token');
          sendHeldAnswer(exchange.req, exchange.res, answer, held);
        }),
    );
  }

  /** T8: the request once more with the new token; its answer goes back whatever it is. */
  #replay(exchange: Exchange, token: ActiveToken): void {
    if (exchange.res.destroyed) return;
    const { account } = exchange;
    const onReplayAnswer = (answer: UpstreamAnswer): void => {
      // E4: a nonce demand is no rejection of the new token: one retry with the nonce.
      if (account.inject.dpop !== undefined && this.#retryWithNonce(exchange, token, answer, onReplayAnswer)) return;
      const status = answer.statusCode;
      if (account.retryOn.has(status)) {
        account.metrics.upstreamRejection(status);
        account.metrics.replay('rejected_again');
        account.manager.replacementFor(token).catch(() => undefined);
      } else {
        account.metrics.replay('success');
        account.manager.tokenAccepted(token);
      }
      this.#streamBack(exchange, answer);
    };
    this.#open(exchange, token, exchange.body?.contents(), onReplayAnswer);
  }

  /** Pass 5: the upstream's answer streams back to the client as it comes (F4: backpressure both ways). */
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
      failed: (error) =>
        error === undefined
          ? sendRefusal(res, brokenAnswerRefusal(account))
          : this.#fence.answerFailure(exchange.inbound, error),
    });
  }

  /** Pass 6: the request ended (answered, refused or left): its upstream request goes, it is counted and logged. */
  #finish(inbound: InboundRequest): void {
    const { req, res, account } = inbound;
    requestEnded(req.socket);
    // A client that goes away takes its upstream request with it.
    if (!res.writableFinished) inbound.exchange?.upstream?.abort();
    // H3: an attempt still unanswered here was given up (the client left, or a throw answered it).
    inbound.exchange?.leg?.abandoned(res.writableFinished ? 'sidecar_error' : 'client_gone');
    inbound.exchange?.body?.release();
    inbound.slotWait?.cancel();
    inbound.slot?.();
    if (inbound.hasTurn) passTurn(req.socket);
    const status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST;
    const durationMs = performance.now() - inbound.started;
    (account?.metrics ?? this.#o.unrouted).observe(status, durationMs / 1000);
    inbound.span?.end(status, account?.name);
    logProxiedRequest(this.#o.logger, req, account?.name, status, durationMs);
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

  /** Nothing of its own to release: upgraded connections are client sockets, closed with the servers, each taking its upstream socket along. */
  close(): void {}
}

/** nginx's code for "the client closed the connection before an answer": counted, never sent. */
const CLIENT_CLOSED_REQUEST = 499;
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** Rejection bodies are small; one larger than this is streamed through and not replayed. */
const MAX_HELD_REJECTION_BYTES = 64 * 1024;
