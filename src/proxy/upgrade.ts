import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { request as httpRequest } from '../util/node-http.js';
import { request as httpsRequest } from 'node:https';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../util/clock.js';
import { SidecarError } from '../util/errors.js';
import type { PendingClient } from './pending-client.js';
import { responseOnRawSocket } from './raw-socket.js';
import { clientResponseHeaders, type UpstreamAccount } from './upstream.js';
import { tunnelThroughProxy } from './upgrade-tunnel.js';

export interface UpgradeCall {
  account: UpstreamAccount;
  /** The client's upgrade request; its socket and the bytes read past its head. */
  req: IncomingMessage;
  socket: Duplex;
  /** Reads the client while it waits (R11); the bytes it sent early go back to the socket on the 101. */
  pending: PendingClient;
  /** The exact upstream path (§8: joined as strings, never by URL resolution). */
  path: string;
  /** Request headers as sent upstream (F1, with `Connection: upgrade` and the token). */
  headers: Record<string, string | string[]>;
  /** E5: removes the token from a refusal's headers (query placement) before they reach the client. */
  scrubAnswer?(headers: OutgoingHttpHeaders): void;
  /** What the client got from the upstream: 101, or the status of the upstream's refusal. */
  onAnswer(statusCode: number): void;
  /**
   * The upstream could not be reached, or its answer could not be passed on, before the client
   * got any head: the caller answers it. (Later failures only cut the client's socket.) `timedOut`
   * names the upstream timeout that fired, if one did (R11).
   */
  onError(error: NodeJS.ErrnoException, timedOut: 'connect' | 'response' | undefined): void;
  /** Runs the R11 timers (`timeouts.connect`, then `timeouts.response` until the answer's head). */
  clock: Clock;
}

/**
 * F2: forwards a WebSocket upgrade to the account's upstream and, on a 101, pipes the two sockets
 * together. A refusal (any other answer) is passed on as an HTTP answer, framed by Node.
 *
 * R3: both pass on what the upstream sent byte for byte: Node parses heads as latin1 (one byte,
 * one character) and the 101's head is written back as latin1, from the raw header list.
 */
export function forwardUpgrade(call: UpgradeCall): void {
  const { socket } = call;
  // E6: a tunnel through a proxy is still being opened after the request is given up: cut it too.
  const abandon = new AbortController();
  const outgoing = sendUpgrade(call, abandon.signal);
  let answered = false;
  const timer = new UpgradeTimer(call, outgoing);
  /** Every failure, whenever it comes: the caller answers the client, or its socket is cut. */
  const fail = (error: unknown, timedOut?: 'connect' | 'response') => {
    timer.stop();
    abandon.abort();
    outgoing.destroy();
    if (answered || socket.destroyed) socket.destroy();
    else call.onError(error as NodeJS.ErrnoException, timedOut);
  };
  timer.start(fail);
  // A client that leaves before the upstream answers takes the upstream request with it.
  socket.once('close', () => {
    timer.stop();
    if (answered) return;
    abandon.abort();
    outgoing.destroy();
  });

  outgoing.on('error', (error) => fail(error));
  outgoing.on('upgrade', (res: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer) => {
    timer.stop();
    try {
      call.pending.handOver();
      joinSockets(socket, upstreamSocket);
      socket.write(switchingProtocolsHead(res), 'latin1');
      answered = true;
      if (upstreamHead.length > 0) upstreamSocket.unshift(upstreamHead);
      upstreamSocket.pipe(socket).pipe(upstreamSocket);
      call.onAnswer(101);
    } catch (error) {
      upstreamSocket.destroy();
      fail(error);
    }
  });
  outgoing.on('response', (res: IncomingMessage) => {
    timer.stop();
    try {
      const client = responseOnRawSocket(call.req, socket);
      // Throws (nothing written) for what Node cannot write: the caller answers 502 instead.
      client.writeHead(res.statusCode ?? 502, res.statusMessage, clientResponseHeaders(res.headers, call.scrubAnswer));
      answered = true;
      res.on('error', () => client.destroy());
      res.pipe(client);
      call.onAnswer(res.statusCode ?? 502);
    } catch (error) {
      res.destroy();
      fail(error);
    }
  });
  outgoing.end();
}

/**
 * The upgrade request, on a connection of its own (it becomes the WebSocket and never returns to a
 * pool): direct, or E6 through the account's proxy in a CONNECT tunnel (TLS inside it for wss),
 * whose opening stops when `abandoned` is aborted.
 */
function sendUpgrade(call: UpgradeCall, abandoned: AbortSignal): ClientRequest {
  const { upstream, tls, proxy } = call.account;
  const request = { method: 'GET', path: call.path, headers: call.headers };
  if (proxy !== undefined)
    return httpRequest({ ...request, createConnection: tunnelThroughProxy(call.account, proxy, abandoned) });
  return (upstream.protocol === 'https:' ? httpsRequest : httpRequest)({
    ...request,
    // URL.hostname keeps an IPv6 literal's brackets; a socket address has none.
    host: upstream.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: upstream.port === '' ? undefined : Number(upstream.port),
    agent: false,
    ...(upstream.protocol === 'https:'
      ? { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized, ...tls.clientCertificate?.current() }
      : {}),
  });
}

/**
 * R11: `timeouts.connect` until the upstream accepts the connection, then `timeouts.response` until
 * the head of its answer (101 or a refusal); either gives 504 `upstream_timeout`.
 */
class UpgradeTimer {
  #handle: TimerHandle | undefined;

  constructor(
    private readonly call: UpgradeCall,
    private readonly outgoing: ClientRequest,
  ) {}

  start(fail: (error: Error, timedOut: 'connect' | 'response') => void): void {
    const { clock, account } = this.call;
    const expire = (timedOut: 'connect' | 'response') => () => {
      this.#handle = undefined;
      fail(new UpgradeTimeoutError(timedOut), timedOut);
    };
    this.#handle = clock.setTimer(expire('connect'), account.timeouts.connectMs);
    this.outgoing.once('socket', (upstreamSocket: Socket) => {
      const connected = () => {
        if (this.#handle === undefined) return;
        clock.clearTimer(this.#handle);
        this.#handle = clock.setTimer(expire('response'), account.timeouts.responseMs);
      };
      // A socket already connected (never with agent: false, but cheap to handle) counts as connected.
      if (upstreamSocket.connecting) upstreamSocket.once('connect', connected);
      else connected();
    });
  }

  stop(): void {
    if (this.#handle !== undefined) this.call.clock.clearTimer(this.#handle);
    this.#handle = undefined;
  }
}

/** R11: what ends an upgrade attempt that ran out of time (504 `upstream_timeout`). */
export class UpgradeTimeoutError extends SidecarError {
  constructor(readonly timedOut: 'connect' | 'response') {
    super(
      'BS_ERR_UPSTREAM_TIMEOUT',
      timedOut === 'connect'
        ? 'the upstream did not accept a connection in time'
        : 'the upstream did not answer in time',
    );
  }
}

/** The 101 head as the upstream sent it (raw names and values, in order), ready to write as latin1. */
function switchingProtocolsHead(res: IncomingMessage): string {
  let head = `HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}\r\n`;
  const raw = res.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** Once upgraded, the two sockets live and die together; neither may time out while quiet. */
function joinSockets(client: Duplex, upstream: Socket): void {
  for (const socket of [client, upstream]) {
    if (socket instanceof Socket) {
      socket.setTimeout(0);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 0);
    }
  }
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  upstream.once('close', () => client.destroy());
  client.once('close', () => upstream.destroy());
}
