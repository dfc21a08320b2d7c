import type { IncomingMessage } from 'node:http';
import type { ReplayBudget } from './replay-budget.js';

/**
 * The request body on its way upstream, read only as the transport pulls it (backpressure
 * intact), keeping the chunks of up to `limit` bytes for a T8 replay, as long as the process-wide
 * replay budget (R9) has room for them; when it has none, no copy is kept.
 *
 * The chunks are kept as read, not copied: a pool of reusable copy blocks was measured
 * (docs/performance.md, uploads) and did not change the upload figures, so it was not kept.
 */
export class ReplayableBody {
  #chunks: Buffer[] = [];
  #size = 0;
  #overflow = false;
  #complete = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly limit: number,
    private readonly budget: ReplayBudget,
  ) {
    req.once('end', () => (this.#complete = true));
  }

  /**
   * The body as the transport reads it; each chunk is recorded on the way. Kept as an async
   * generator on purpose: async iteration reads the paused request with `read()`, which hands
   * over whatever has queued as one buffer, so the upstream gets fewer, larger writes. A Readable
   * fed from `data` events (as a bare proxy passes the request itself) was measured at 2.8 times
   * the CPU per 1 MiB upload (5,587 against 1,978 us, docs/performance.md) and dropped.
   */
  async *stream(): AsyncGenerator<Buffer> {
    for await (const chunk of this.req as AsyncIterable<Buffer>) {
      if (!this.#overflow) this.#record(chunk);
      yield chunk;
    }
  }

  #record(chunk: Buffer): void {
    if (this.#size + chunk.length > this.limit || !this.budget.take(chunk.length)) {
      this.release();
      return;
    }
    this.#size += chunk.length;
    this.#chunks.push(chunk);
  }

  /** Whole and within the bound: only then can the request be sent again. */
  replayable(): boolean {
    return this.#complete && !this.#overflow;
  }

  /** The body as one buffer, for the replay. */
  contents(): Buffer {
    return Buffer.concat(this.#chunks);
  }

  /** The exchange is over, or the body outgrew the bound: nothing is kept any longer. */
  release(): void {
    this.#overflow = true;
    this.#chunks = [];
    this.budget.give(this.#size);
    this.#size = 0;
  }
}
