import type { IncomingMessage } from 'node:http';
import type { ReplayBudget } from './replay-budget.js';

/**
 * The request body on its way upstream, read only as the transport pulls it (backpressure
 * intact), keeping the chunks of up to `limit` bytes for a T8 replay, as long as the process-wide
 * replay budget (R9) has room for them; when it has none, no copy is kept.
 *
 * The chunks are kept as read, not copied: a pool of reusable copy blocks was measured
 * (README, Performance: uploads) and did not change the upload figures, so it was not kept.
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

  /** The body as the transport reads it; each chunk is recorded on the way. */
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
