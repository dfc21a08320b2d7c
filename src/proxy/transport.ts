import type { IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import type { buildConnector, Dispatcher, Pool } from 'undici';
import type { CertificatePair } from '../util/client-certificate.js';
import type { EgressProxy } from '../config/egress.js';
import { createProxyAgent } from '../flows/proxy-agent.js';
import { AnswerBody } from './answer-body.js';
import { answerHasNoBody, clientReasonPhrase, type UpstreamAccount, type UpstreamPool } from './upstream.js';
import { asError } from '../util/errors.js';

/** What an upstream answered: the head, and the body as the transport pushes it. */
export interface UpstreamAnswer {
  statusCode: number;
  statusMessage: string | undefined;
  headers: IncomingHttpHeaders;
  body: AnswerBody;
}

export interface UpstreamCall {
  account: UpstreamAccount;
  method: string;
  path: string;
  /** Request headers as undici takes them: no hop-by-hop or framing headers (undici frames the body). */
  headers: Record<string, string | string[]>;
  /** The client's request body as it is read, a kept body for a replay, or none. */
  body: AsyncIterable<Buffer> | Buffer | undefined;
  onAnswer(answer: UpstreamAnswer): void;
  onError(failure: UpstreamFailure): void;
}

/** Why an upstream request ended before its answer could be passed on. */
export interface UpstreamFailure {
  error: NodeJS.ErrnoException;
  /** Which upstream timeout fired, if one did. */
  timedOut: 'connect' | 'response' | undefined;
  /** A pooled (kept-alive) connection failed: the upstream may have closed it while idle. */
  reused: boolean;
}

/** Sends one request upstream; `abort()` cancels it (the client went away). */
export type Transport = (call: UpstreamCall) => { abort(): void };

/**
 * undici's Pool class alone. `import 'undici'` also loads fetch, caches, mocks and proxy agents
 * the sidecar never uses: 8 MiB more resident memory (README, Performance: memory). The path is
 * undici's own module layout, so test/unit/undici-pool.test.ts checks that it is still the class
 * `undici` exports: an upgrade that moves it fails the tests, not production.
 */
export const UndiciPool: typeof Pool = createRequire(import.meta.url)(
  'undici/lib/dispatcher/pool.js',
) as (typeof import('undici'))['Pool'];

const POOL_LIMITS = {
  // Drop idle pooled sockets before a Node upstream's 5 s keepAliveTimeout closes them under us.
  keepAliveTimeout: 4_000,
  keepAliveMaxTimeout: 60_000,
};

/**
 * The account's upstream pool: undici's Pool when direct (the hot path as it always was), else
 * undici's ProxyAgent through `proxy` (E6) with the same limits, the upstream origin added to
 * each request as the agent needs it.
 */
export function createUpstreamPool(
  account: Pick<UpstreamAccount, 'upstream' | 'tls' | 'timeouts'> & { connections: number },
  proxy: EgressProxy | undefined,
): UpstreamPool {
  if (proxy === undefined) return createUndiciPool(account);
  const agent = createProxyAgent(proxy, {
    tls: account.tls,
    connectTimeoutMs: account.timeouts.connectMs,
    pool: { connections: account.connections, ...POOL_LIMITS },
  });
  const origin = account.upstream.origin;
  return {
    dispatch: (options, handler) => agent.dispatch({ ...options, origin }, handler),
    destroy: () => agent.destroy(),
  } as UpstreamPool;
}

/**
 * undici's Pool: the fastest way out of Node to an HTTP/1.1 upstream here (see the README's
 * bench table). One pool per account, connections kept alive and pipelined never.
 */
export function createUndiciPool(
  account: Pick<UpstreamAccount, 'upstream' | 'tls' | 'timeouts'> & { connections: number },
): Pool {
  return new UndiciPool(account.upstream.origin, {
    // R10: as many as ConnectionSlots hands out, so requests queue there (with a deadline), not here.
    connections: account.connections,
    ...POOL_LIMITS,
    connect: connectOptions(account),
  });
}

/**
 * How the pool opens a connection. E2: with a client certificate, a connector made anew whenever
 * the certificate's files changed (undici's own buildConnector, which caches TLS sessions per
 * connector), so new connections present the rotated certificate and open ones finish as they are.
 */
function connectOptions(account: Pick<UpstreamAccount, 'tls' | 'timeouts'>): Pool.Options['connect'] {
  const base = {
    timeout: account.timeouts.connectMs,
    ...(account.tls.ca === undefined ? {} : { ca: account.tls.ca }),
    rejectUnauthorized: account.tls.rejectUnauthorized,
  };
  const certificate = account.tls.clientCertificate;
  if (certificate === undefined) return base;
  let pair: CertificatePair | undefined;
  let connector: buildConnector.connector | undefined;
  return (options, callback) => {
    const current = certificate.current();
    if (connector === undefined || current !== pair) {
      pair = current;
      connector = buildUndiciConnector({ ...base, ...current });
    }
    return connector(options, callback);
  };
}

/** undici's connector factory alone (see UndiciPool for why not `import 'undici'`). */
const buildUndiciConnector: typeof buildConnector = createRequire(import.meta.url)(
  'undici/lib/core/connect.js',
) as typeof buildConnector;

const UNDICI_TIMEOUTS: Record<string, 'connect' | 'response'> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'response',
};

/**
 * Sends with `pool.dispatch` and a handler, not `pool.request`: no promise, AbortController or
 * body stream per request. Chunks go from the upstream socket into the AnswerBody, which writes
 * them to the client and pauses the upstream when the client is slow.
 */
export const sendWithUndici: Transport = (call) => {
  const exchange = new DispatchedExchange(call);
  call.account.pool.dispatch(
    {
      method: call.method as Dispatcher.HttpMethod,
      path: call.path,
      headers: call.headers,
      // undici streams an async iterable as the body, pulling chunks as the socket drains.
      body: call.body as Dispatcher.DispatchOptions['body'],
      // Time to the response head; once streaming, a quiet stream (SSE) is never cut.
      headersTimeout: call.account.timeouts.responseMs,
      bodyTimeout: 0,
    },
    exchange,
  );
  return exchange;
};

/** One request's undici handler; also its abort handle. */
class DispatchedExchange implements Dispatcher.DispatchHandler {
  readonly #call: UpstreamCall;
  #controller: Dispatcher.DispatchController | undefined;
  #body: AnswerBody | undefined;
  #aborted = false;
  /** Passing the answer on failed, and the client was already told. */
  #failed = false;
  /** The answer was whole at its head (R3: HEAD, 204, 304): nothing undici reports after it matters. */
  #complete = false;

  constructor(call: UpstreamCall) {
    this.#call = call;
  }

  /** The client went away: the upstream request goes too, even if it is still queued in the pool. */
  abort(): void {
    this.#aborted = true;
    this.#controller?.abort(new Error('client closed the connection'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#aborted) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    // 1xx interim answers (102, 103 Early Hints) come here too; only the final answer is forwarded.
    if (statusCode < 200) return;
    const body = new AnswerBody(controller);
    this.#body = body;
    try {
      this.#call.onAnswer({ statusCode, statusMessage: clientReasonPhrase(statusMessage), headers, body });
    } catch (error) {
      // Whatever went wrong passing the answer on, the client must get one: a 502 if no head
      // went out yet, else a closed connection (onError decides). undici is told to stop.
      this.#body = undefined;
      this.#failed = true;
      this.#call.onError({ error: error as NodeJS.ErrnoException, timedOut: undefined, reused: false });
      controller.abort(asError(error));
      return;
    }
    if (answerHasNoBody(this.#call.method, statusCode)) {
      // R3: no body follows, whatever Content-Length says; undici would wait for one or, for a 204
      // or 304 with Content-Length, call its absence a mismatch and fail the answer. It ends here.
      this.#complete = true;
      this.#body = undefined;
      body.end();
    }
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#body?.push(chunk);
  }

  onResponseEnd(): void {
    this.#body?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#failed || this.#complete) return;
    if (this.#body !== undefined) {
      this.#body.fail();
      return;
    }
    if (this.#aborted) return;
    const errno = error as NodeJS.ErrnoException;
    this.#call.onError({
      error: errno,
      timedOut: UNDICI_TIMEOUTS[errno.code ?? ''],
      reused: errno.code === 'UND_ERR_SOCKET',
    });
  }
}
