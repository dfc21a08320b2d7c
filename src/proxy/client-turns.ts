import type { Socket } from 'node:net';

/**
 * R9: requests pipelined on one client connection are served one at a time, in order: the next
 * is not forwarded before the answer to the one before it has been passed on. Node parses and
 * hands over every pipelined request at once and buffers the answers of all but the first; a
 * client that writes thousands and never reads would otherwise open as many upstream requests
 * and pile up their answers in memory (issue 17).
 */
interface Turns {
  /** A request of this connection is being served. */
  busy: boolean;
  /** Requests that arrived meanwhile, each started when its turn comes. */
  waiting: Array<() => void>;
}

const TURNS = Symbol('clientTurns');
type TurnTakingSocket = Socket & { [TURNS]?: Turns };

/** Starts `serve` now when the connection has no request being served, else when its turn comes. */
export function whenTurnComes(socket: Socket, serve: () => void): void {
  const turns = ((socket as TurnTakingSocket)[TURNS] ??= { busy: false, waiting: [] });
  if (turns.busy) {
    turns.waiting.push(serve);
    return;
  }
  turns.busy = true;
  serve();
}

/** The request being served is over: the next one waiting on the connection starts. */
export function passTurn(socket: Socket): void {
  const turns = (socket as TurnTakingSocket)[TURNS];
  if (turns === undefined) return;
  const next = turns.waiting.shift();
  if (next === undefined) turns.busy = false;
  else next();
}
