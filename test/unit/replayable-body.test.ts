import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ReplayBudget, UNBOUNDED_REPLAY_BUDGET } from '../../src/proxy/replay-budget.js';
import { ReplayableBody } from '../../src/proxy/replayable-body.js';

/** A request body that arrives as these chunks, like a socket's reads. */
function requestOf(chunks: Buffer[]): IncomingMessage {
  return Readable.from(chunks, { objectMode: false }) as unknown as IncomingMessage;
}

/** Reads the body as the transport does and returns what was sent upstream. */
async function sendAll(body: ReplayableBody): Promise<Buffer> {
  const sent: Buffer[] = [];
  for await (const chunk of body.stream()) sent.push(chunk);
  return Buffer.concat(sent);
}

/** Chunks of the given sizes with random contents. */
const chunksOf = (...sizes: number[]) => sizes.map((size) => randomBytes(size));
const KiB = 1024;

describe('T8 replay copies (ReplayableBody)', () => {
  it('T8: a body within replayMaxBody is sent whole and kept byte for byte for the replay', async () => {
    const chunks = chunksOf(100, 64 * KiB, 3, 65 * KiB, 1);
    const body = new ReplayableBody(requestOf(chunks), 1024 * KiB, UNBOUNDED_REPLAY_BUDGET);
    expect(await sendAll(body)).toEqual(Buffer.concat(chunks));
    expect(body.replayable()).toBe(true);
    expect(body.contents()).toEqual(Buffer.concat(chunks));
  });

  it('T8: a body of exactly replayMaxBody is replayable, one byte more is not', async () => {
    const exact = new ReplayableBody(requestOf(chunksOf(64 * KiB, 64 * KiB)), 128 * KiB, UNBOUNDED_REPLAY_BUDGET);
    await sendAll(exact);
    expect(exact.replayable()).toBe(true);
    const over = new ReplayableBody(requestOf(chunksOf(64 * KiB, 64 * KiB, 1)), 128 * KiB, UNBOUNDED_REPLAY_BUDGET);
    await sendAll(over);
    expect(over.replayable()).toBe(false);
  });

  it('T8: a body over replayMaxBody is still sent upstream whole, and nothing of it is kept', async () => {
    const chunks = chunksOf(64 * KiB, 64 * KiB, 64 * KiB);
    const body = new ReplayableBody(requestOf(chunks), 100 * KiB, UNBOUNDED_REPLAY_BUDGET);
    expect(await sendAll(body)).toEqual(Buffer.concat(chunks));
    expect(body.replayable()).toBe(false);
    expect(body.contents().length).toBe(0);
  });

  it('T8: a body not yet read to its end is not replayable', async () => {
    const body = new ReplayableBody(requestOf(chunksOf(10)), 1024, UNBOUNDED_REPLAY_BUDGET);
    expect(body.replayable()).toBe(false);
    await sendAll(body);
    expect(body.replayable()).toBe(true);
  });

  it('after release (the exchange is over) nothing is kept and the request is not replayable', async () => {
    const body = new ReplayableBody(requestOf(chunksOf(40 * KiB)), 1024 * KiB, UNBOUNDED_REPLAY_BUDGET);
    await sendAll(body);
    body.release();
    expect(body.replayable()).toBe(false);
    expect(body.contents().length).toBe(0);
  });
});

describe('R9 data-plane limits: the replay budget', () => {
  it('R9: bodies share limits.replayBudget: one that does not fit keeps no copy but is sent whole; released copies give their bytes back', async () => {
    const budget = new ReplayBudget(200 * KiB);
    const first = new ReplayableBody(requestOf(chunksOf(64 * KiB, 64 * KiB)), 1024 * KiB, budget);
    await sendAll(first);
    expect(first.replayable()).toBe(true);
    expect(budget.inUse()).toBe(128 * KiB);
    // 128 KiB more do not fit in what is left (72 KiB): the part already taken is given back.
    const chunks = chunksOf(64 * KiB, 64 * KiB);
    const second = new ReplayableBody(requestOf(chunks), 1024 * KiB, budget);
    expect(await sendAll(second)).toEqual(Buffer.concat(chunks));
    expect(second.replayable()).toBe(false);
    expect(second.contents().length).toBe(0);
    expect(budget.inUse()).toBe(128 * KiB);
    first.release();
    expect(budget.inUse()).toBe(0);
    // With room again, a copy is kept again.
    const third = new ReplayableBody(requestOf(chunksOf(100 * KiB)), 1024 * KiB, budget);
    await sendAll(third);
    expect(third.replayable()).toBe(true);
    third.release();
    expect(budget.inUse()).toBe(0);
  });

  it('R9: a release after an overflow gives nothing back twice (the budget never grows past its limit)', async () => {
    const budget = new ReplayBudget(100 * KiB);
    const body = new ReplayableBody(requestOf(chunksOf(60 * KiB, 60 * KiB)), 1024 * KiB, budget);
    await sendAll(body);
    body.release();
    body.release();
    expect(budget.inUse()).toBe(0);
    expect(budget.take(100 * KiB)).toBe(true);
    expect(budget.take(1)).toBe(false);
  });
});
