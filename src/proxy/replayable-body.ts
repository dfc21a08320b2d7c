import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
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
   * The body as the transport reads it: a Readable fed from the request's `data` events, each
   * chunk recorded on the way. Why not an async generator over the request (the first version):
   * async iteration reads a paused stream with `read()`, which concatenates (copies) whatever has
   * queued, and for 1 MiB uploads those copies were the external-memory churn behind the upload
   * gap to a bare proxy (docs/performance.md). Why not the request itself: undici destroys a
   * stream body when the upstream fails, and destroying the request would cut the client's
   * connection before it got its 502.
   */
  stream(): Readable {
    const req = this.req;
    const body = new Readable({
      // The request's chunks are queued here only while the upstream socket is full.
      highWaterMark: 64 * 1024,
      read: () => req.resume(),
      destroy: (error, done) => {
        req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
        done(error);
      },
    });
    const onData = (chunk: Buffer): void => {
      if (!this.#overflow) this.#record(chunk);
      if (!body.push(chunk)) req.pause();
    };
    const onEnd = (): void => void body.push(null);
    const onError = (error: Error): void => void body.destroy(error);
    // A client that goes away mid-upload: the request closes without an end.
    const onClose = (): void => {
      if (!req.readableEnded) body.destroy(new Error('the client closed the request before its body ended'));
    };
    req.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose);
    return body;
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
