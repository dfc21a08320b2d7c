import type { IncomingMessage } from 'node:http';
import { ServerResponse } from '../util/node-http.js';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * A ServerResponse on a socket Node handed over raw (its 'upgrade' event), so an answer there
 * is framed and written by Node like any other (head as latin1, chunked when unsized). The
 * socket is ended once the answer is out: no second request follows an upgrade offer.
 *
 * The response emits 'close' exactly once, as one from Node's server does (the data plane counts
 * a request and gives back its upstream connection slot on it, R10): when its socket closes
 * first (a client that left), or else once the answer is out, since the socket is then detached
 * and its own 'close' no longer reaches the response.
 */
export function responseOnRawSocket(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  let closed = false;
  res.once('close', () => {
    closed = true;
  });
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
    // As Node's server does on finish: 'close' on the next tick, after every 'finish' listener.
    process.nextTick(() => {
      if (closed) return;
      res.destroyed = true;
      res.emit('close');
    });
  });
  return res;
}
