import type { ServerResponse } from 'node:http';

/** How the transport is told to stop and restart reading the upstream socket (backpressure). */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

/**
 * An upstream answer's body, pushed by the transport chunk by chunk, and consumed exactly once:
 * streamed to the client (`sendTo`), or first held whole when small (`hold`, for a T8 replay).
 *
 * Not a Node Readable on purpose: a stream, a pipe and their listeners per request cost more than
 * the rest of the hot path together (see the README's Performance section). Chunks that arrive
 * before a consumer is attached are kept, and the transport is paused until one is.
 */
export class AnswerBody {
  #flow: FlowControl;
  /** Chunks read but not yet written to a client (before `sendTo`, or held). */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #ended = false;
  #failed = false;
  #client: ServerResponse | undefined;
  #holding: { limit: number; done: (body: Buffer | undefined) => void } | undefined;
  #awaitingDrain = false;
  readonly #onDrain = () => {
    this.#awaitingDrain = false;
    this.#flow.resume();
  };

  constructor(flow: FlowControl) {
    this.#flow = flow;
  }

  /** A chunk from upstream (transport side). */
  push(chunk: Buffer): void {
    const client = this.#client;
    if (client !== undefined) {
      if (!client.write(chunk)) this.#pauseUntilDrained(client);
      return;
    }
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#holding === undefined) {
      this.#flow.pause();
    } else if (this.#pendingBytes > this.#holding.limit) {
      // Too large to hold: stop reading and let the caller stream what there is and the rest.
      this.#flow.pause();
      this.#settleHolding(undefined);
    }
  }

  /** The upstream answer is complete (transport side). */
  end(): void {
    this.#ended = true;
    if (this.#client !== undefined) {
      this.#client.end();
      return;
    }
    if (this.#holding !== undefined) this.#settleHolding(this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#pendingBytes));
  }

  /** The upstream connection broke mid-answer (transport side): the client's answer is cut too. */
  fail(): void {
    this.#failed = true;
    if (this.#client !== undefined) {
      this.#client.destroy();
      return;
    }
    // Not whole, so not held: `sendTo` then passes on what came and cuts the client's answer.
    this.#settleHolding(undefined);
  }

  /** Streams the body (what was read so far, then the rest) to the client, with backpressure, and ends it. */
  sendTo(client: ServerResponse): void {
    this.#client = client;
    const pending = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    let writable = true;
    // A whole small answer (the common case) leaves in one write, head and body together.
    if (this.#ended && pending.length === 1) {
      client.end(pending[0]);
      return;
    }
    for (const chunk of pending) writable = client.write(chunk);
    if (this.#failed) client.destroy();
    else if (this.#ended) client.end();
    else if (writable) this.#flow.resume();
    else this.#pauseUntilDrained(client);
  }

  #pauseUntilDrained(client: ServerResponse): void {
    this.#flow.pause();
    if (this.#awaitingDrain) return;
    this.#awaitingDrain = true;
    client.once('drain', this.#onDrain);
  }

  /**
   * Reads the whole body when it is at most `limit` bytes and calls back with it; otherwise
   * calls back with undefined, keeping what was read for `sendTo`.
   */
  hold(limit: number, done: (body: Buffer | undefined) => void): void {
    this.#holding = { limit, done };
    if (this.#failed || this.#pendingBytes > limit) this.#settleHolding(undefined);
    else if (this.#ended) this.end();
    else this.#flow.resume();
  }

  /** Ends a `hold` (if one is waiting) with the whole body, or undefined when it is not held. */
  #settleHolding(body: Buffer | undefined): void {
    const holding = this.#holding;
    if (holding === undefined) return;
    this.#holding = undefined;
    holding.done(body);
  }
}
