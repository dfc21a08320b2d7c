import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../util/logger.js';

// A request's bookkeeping on its client connection: in flight or not, and its log line once it ended.

/** Requests in flight on a client connection: at shutdown, a connection with none is closed at once. */
const IN_FLIGHT = Symbol('inFlight');
type BusySocket = Socket & { [IN_FLIGHT]?: number };

/** A request began on this client connection. */
export function requestStarted(socket: Socket): void {
  const busy = socket as BusySocket;
  busy[IN_FLIGHT] = (busy[IN_FLIGHT] ?? 0) + 1;
}

/** A request on this client connection ended (answered, refused or abandoned). */
export function requestEnded(socket: Socket): void {
  const busy = socket as BusySocket;
  busy[IN_FLIGHT] = (busy[IN_FLIGHT] ?? 1) - 1;
}

/** True while a request on this client connection has not ended (R5: shutdown leaves it open). */
export function hasRequestInFlight(socket: Socket): boolean {
  return ((socket as BusySocket)[IN_FLIGHT] ?? 0) > 0;
}

/**
 * The log line of a request that ended, at debug only (request logs are opt-in): the path
 * without its query (which may carry a key or, with inject.query, the token); never headers.
 */
export function logProxiedRequest(
  logger: Logger,
  req: IncomingMessage,
  account: string | undefined,
  status: number,
  durationMs: number,
): void {
  if (!logger.isLevelEnabled('debug')) return;
  const path = (req.url ?? '').split('?', 1)[0];
  logger.debug({ account, method: req.method, path, status, durationMs: Math.round(durationMs) }, 'proxied request');
}
