import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { UpstreamAccount } from './upstream.js';

/** What an upstream answered: the head, and the body as a stream (piped with backpressure). */
export interface UpstreamAnswer {
  statusCode: number;
  statusMessage: string | undefined;
  headers: IncomingHttpHeaders;
  body: Readable;
}

export interface UpstreamCall {
  account: UpstreamAccount;
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  /** The client's request body as it is read, or a kept body for a replay. */
  body: AsyncIterable<Buffer> | Buffer;
  onAnswer(answer: UpstreamAnswer): void;
  /** `timedOut` says which upstream timeout fired, if one did; `reused` whether a pooled connection failed. */
  onError(error: NodeJS.ErrnoException, timedOut: 'connect' | 'response' | undefined, reused: boolean): void;
}

/** Sends one request upstream; `abort()` cancels it (the client went away). */
export type Transport = (call: UpstreamCall) => { abort(): void };

/**
 * undici's Pool: the fastest way out of Node to an HTTP/1.1 upstream here (see the README's
 * bench table). One pool per account, connections kept alive and pipelined never.
 */
export function createUndiciPool(account: Pick<UpstreamAccount, 'upstream' | 'tls' | 'timeouts'>): Pool {
  return new Pool(account.upstream.origin, {
    connections: 256,
    // Drop idle pooled sockets before a Node upstream's 5 s keepAliveTimeout closes them under us.
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    connect: {
      timeout: account.timeouts.connectMs,
      ...(account.tls.ca === undefined ? {} : { ca: account.tls.ca }),
      rejectUnauthorized: account.tls.rejectUnauthorized,
    },
  });
}

const UNDICI_TIMEOUTS: Record<string, 'connect' | 'response'> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'response',
};

/** Headers undici refuses or sets itself (it frames the body and owns the connection). */
const UNDICI_OWNED = ['transfer-encoding', 'connection', 'keep-alive', 'expect', 'upgrade'];

export const sendWithUndici: Transport = (call) => {
  const controller = new AbortController();
  const pool = call.account.pool;
  const headers: OutgoingHttpHeaders = { ...call.headers };
  for (const name of UNDICI_OWNED) delete headers[name];
  pool
    .request({
      method: call.method as 'GET',
      path: call.path,
      headers: headers as Record<string, string | string[]>,
      // undici streams an async iterable as the body, pulling chunks as the socket drains.
      body: bodyToSend(call.body) as Readable | Buffer | undefined,
      signal: controller.signal,
      // Time to the response head; once streaming, a quiet stream (SSE) is never cut.
      headersTimeout: call.account.timeouts.responseMs,
      bodyTimeout: 0,
    })
    .then(
      (response: Dispatcher.ResponseData) =>
        call.onAnswer({ statusCode: response.statusCode, statusMessage: undefined, headers: response.headers as IncomingHttpHeaders, body: response.body }),
      (error: NodeJS.ErrnoException) => {
        if (controller.signal.aborted) return;
        call.onError(error, UNDICI_TIMEOUTS[error.code ?? ''], error.code === 'UND_ERR_SOCKET');
      },
    );
  return { abort: () => controller.abort() };
};

/** An empty kept body is no body at all. */
function bodyToSend(body: AsyncIterable<Buffer> | Buffer): AsyncIterable<Buffer> | Buffer | undefined {
  return Buffer.isBuffer(body) && body.length === 0 ? undefined : body;
}

/** node:http with a keep-alive Agent: kept to measure against (BEARER_SIDECAR_TRANSPORT=node). */
export const sendWithNodeHttp: Transport = (call) => {
  const { account } = call;
  const send = account.upstream.protocol === 'https:' ? httpsRequest : httpRequest;
  const upstreamReq = send({
    protocol: account.upstream.protocol,
    hostname: account.upstream.hostname,
    port: account.upstream.port,
    method: call.method,
    path: call.path,
    headers: call.headers,
    agent: account.agent,
  });
  let timedOut: 'connect' | 'response' | undefined;
  // Response timeout: socket inactivity while we wait (an upload in progress is activity).
  upstreamReq.setTimeout(account.timeouts.responseMs, () => {
    timedOut = 'response';
    upstreamReq.destroy();
  });
  upstreamReq.on('socket', (socket) => {
    if (!socket.connecting) return;
    const timer = setTimeout(() => {
      timedOut = 'connect';
      upstreamReq.destroy();
    }, account.timeouts.connectMs);
    socket.once('connect', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  });
  upstreamReq.on('response', (upstreamRes) => {
    upstreamReq.setTimeout(0);
    call.onAnswer({ statusCode: upstreamRes.statusCode ?? 502, statusMessage: upstreamRes.statusMessage, headers: upstreamRes.headers, body: upstreamRes });
  });
  upstreamReq.on('error', (error: NodeJS.ErrnoException) => call.onError(error, timedOut, upstreamReq.reusedSocket));
  if (Buffer.isBuffer(call.body)) upstreamReq.end(call.body);
  else Readable.from(call.body, { objectMode: false }).pipe(upstreamReq);
  return { abort: () => upstreamReq.destroy() };
};
