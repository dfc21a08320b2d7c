import type { Socket } from 'node:net';

// A request's bookkeeping on its client connection: in flight or not (shutdown closes idle connections at once).

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

/** True while a request on this client connection has not ended (§2 SIGTERM: shutdown leaves its connection open). */
export function hasRequestInFlight(socket: Socket): boolean {
  return ((socket as BusySocket)[IN_FLIGHT] ?? 0) > 0;
}
