import type { Duplex } from 'node:stream';

/** A client should send nothing before its 101; more than this while waiting is not a WebSocket client. */
const MAX_EARLY_BYTES = 64 * 1024;

/**
 * R11: the client socket of an upgrade that waits (for a token, a connection, the upstream's 101).
 * Node hands it over paused, so a client that leaves with a FIN would go unnoticed and keep its
 * socket, and the upstream attempt, open for good. It is read meanwhile: its end closes it (so
 * the attempt upstream is abandoned), and what it sent early is kept (up to 64 KiB) and put back
 * for the upstream once the upgrade is accepted.
 */
export class PendingClient {
  readonly #socket: Duplex;
  #early: Buffer[] = [];
  #earlyBytes = 0;
  #watching = true;

  constructor(socket: Duplex, head: Buffer) {
    this.#socket = socket;
    if (head.length > 0) this.#keep(head);
    socket.on('data', this.#onData);
    socket.once('end', this.#onEnd);
  }

  /** The upgrade is accepted: reading stops, and the bytes read so far are put back at the front of the socket. */
  handOver(): void {
    if (!this.#watching) return;
    this.#watching = false;
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.pause();
    if (this.#early.length > 0) this.#socket.unshift(Buffer.concat(this.#early));
    this.#early = [];
  }

  #keep(chunk: Buffer): void {
    this.#earlyBytes += chunk.length;
    if (this.#earlyBytes > MAX_EARLY_BYTES) this.#socket.destroy();
    else this.#early.push(chunk);
  }

  readonly #onData = (chunk: Buffer): void => this.#keep(chunk);

  /** The client left (or half-closed: it cannot use a WebSocket then): its socket goes, and with it the attempt. */
  readonly #onEnd = (): void => {
    this.#socket.destroy();
  };
}
