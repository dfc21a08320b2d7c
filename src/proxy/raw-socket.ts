import type { IncomingMessage } from 'node:http';
import { ServerResponse } from '../util/node-http.js';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * A ServerResponse on a socket Node handed over raw (its 'upgrade' event), so an answer there
 * is framed and written by Node like any other (head as latin1, chunked when unsized). The
 * socket is ended once the answer is out: no second request follows an upgrade offer.
 */
export function responseOnRawSocket(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  return res;
}
