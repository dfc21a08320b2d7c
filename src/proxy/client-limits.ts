import type { ServerOptions } from 'node:http';
import type { Socket } from 'node:net';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';

/** R9: the `limits:` settings that bound clients of the data plane. */
export interface ClientLimits {
  headersTimeoutMs: number;
  maxConnections: number;
}

/**
 * R9: options for every data-plane server. `requestTimeout: 0`: a body that keeps flowing is never
 * cut by a total-time limit (Node's default cuts any request at 300 s; a stalled one is cut by
 * `clientIdleTimeout` instead). `headersTimeout` bounds a slow-loris head; Node checks it every
 * `connectionsCheckingInterval`, here a quarter of it (at most 1 s), so a head is cut at most 25%
 * late instead of up to 30 s late (Node's default interval).
 */
export function dataServerOptions(limits: ClientLimits): ServerOptions {
  return {
    requestTimeout: 0,
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: Math.max(1, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/** How often at most the sidecar logs that it refuses connections (the count says how many). */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

/**
 * R9: the data plane's open client connections, over all its listeners (upgraded WebSockets
 * included). Past `limits.maxConnections`, a new connection is closed at once, before a byte is
 * read; each is counted, and a warning is logged at most once a minute with the number refused.
 * Also what shutdown walks to close idle connections.
 */
export class ClientConnections {
  readonly #sockets = new Set<Socket>();
  #max: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #countRefusal: () => void;
  #unloggedRefusals = 0;
  #lastLogAt = Number.NEGATIVE_INFINITY;

  constructor(options: { max: number; clock: Clock; logger: Logger; countRefusal: () => void }) {
    this.#max = options.max;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#countRefusal = options.countRefusal;
  }

  /** H2: a reloaded `limits.maxConnections`; connections open beyond it stay open, new ones are refused until fewer are open. */
  resize(max: number): void {
    this.#max = max;
  }

  /** A server's 'connection' listener: keeps the socket, or closes it at once when the limit is reached. */
  readonly accept = (socket: Socket): void => {
    if (this.#sockets.size >= this.#max) {
      socket.destroy();
      this.#refused();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
  };

  /** The open client connections now. */
  sockets(): ReadonlySet<Socket> {
    return this.#sockets;
  }

  #refused(): void {
    this.#countRefusal();
    this.#unloggedRefusals += 1;
    const now = this.#clock.now();
    if (now - this.#lastLogAt < REFUSAL_LOG_INTERVAL_MS) return;
    this.#logger.warn(
      { maxConnections: this.#max, refused: this.#unloggedRefusals },
      'client connection limit reached (limits.maxConnections): new connections are closed at once',
    );
    this.#lastLogAt = now;
    this.#unloggedRefusals = 0;
  }
}
