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
/**
 * How a sized answer's head reaches the client: `write` just before the first body byte (or the
 * end), `failed` instead when the upstream breaks off before any byte (R3: the client then gets
 * an error answer rather than a head and a cut).
 */
export interface DeferredHead {
  write(): void;
  /** `error` is what `write` threw, if that is why; undefined when the upstream broke off. */
  failed(error?: unknown): void;
}

export class AnswerBody {
  #flow: FlowControl;
  /** Chunks read but not yet written to a client (before `sendTo`, or held). */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #ended = false;
  #failed = false;
  #client: ServerResponse | undefined;
  /** The client's answer head, written just before the first byte (so a body that breaks first is a 502). */
  #head: DeferredHead | undefined;
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
      if (!this.#writeHead()) return;
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
      if (this.#writeHead()) this.#client.end();
      return;
    }
    if (this.#holding !== undefined)
      this.#settleHolding(
        this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#pendingBytes),
      );
  }

  /** The upstream connection broke mid-answer (transport side): the client's answer is cut too. */
  fail(): void {
    this.#failed = true;
    if (this.#client !== undefined) {
      this.#failClient(this.#client);
      return;
    }
    // Not whole, so not held: `sendTo` then passes on what came and cuts the client's answer.
    this.#settleHolding(undefined);
  }

  /**
   * Streams the body (what was read so far, then the rest) to the client, with backpressure, and
   * ends it. With `head`, the client's head is written just before the first byte; without, the
   * caller has written it already.
   */
  sendTo(client: ServerResponse, head?: DeferredHead): void {
    this.#client = client;
    this.#head = head;
    const pending = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#failed && pending.length === 0) {
      this.#failClient(client);
      return;
    }
    // Nothing to write yet: the head waits for the first byte or the end (a sized answer, R3).
    if ((pending.length > 0 || this.#ended) && !this.#writeHead()) return;
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

  /**
   * Writes a deferred head once, before the first byte or the end. False when writing it threw:
   * the client is let go (the caller answers it) and nothing more is written to it.
   */
  #writeHead(): boolean {
    const head = this.#head;
    if (head === undefined) return true;
    this.#head = undefined;
    try {
      head.write();
      return true;
    } catch (error) {
      this.#client = undefined;
      this.#flow.pause();
      head.failed(error);
      return false;
    }
  }

  /** The upstream broke off: before any byte (head still deferred) the caller answers; after, the client is cut. */
  #failClient(client: ServerResponse): void {
    const head = this.#head;
    this.#head = undefined;
    if (head !== undefined) head.failed();
    else client.destroy();
  }

  #pauseUntilDrained(client: ServerResponse): void {
    this.#flow.pause();
    if (this.#awaitingDrain) return;
    this.#awaitingDrain = true;
    client.once('drain', this.#onDrain);
  }

  /** True once the upstream broke off mid-answer (the body will never be whole). */
  get failed(): boolean {
    return this.#failed;
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
