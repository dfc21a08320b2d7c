import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
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
    const body = new ReplayableBody(requestOf(chunks), 1024 * KiB);
    expect(await sendAll(body)).toEqual(Buffer.concat(chunks));
    expect(body.replayable()).toBe(true);
    expect(body.contents()).toEqual(Buffer.concat(chunks));
  });

  it('T8: a body of exactly replayMaxBody is replayable, one byte more is not', async () => {
    const exact = new ReplayableBody(requestOf(chunksOf(64 * KiB, 64 * KiB)), 128 * KiB);
    await sendAll(exact);
    expect(exact.replayable()).toBe(true);
    const over = new ReplayableBody(requestOf(chunksOf(64 * KiB, 64 * KiB, 1)), 128 * KiB);
    await sendAll(over);
    expect(over.replayable()).toBe(false);
  });

  it('T8: a body over replayMaxBody is still sent upstream whole, and nothing of it is kept', async () => {
    const chunks = chunksOf(64 * KiB, 64 * KiB, 64 * KiB);
    const body = new ReplayableBody(requestOf(chunks), 100 * KiB);
    expect(await sendAll(body)).toEqual(Buffer.concat(chunks));
    expect(body.replayable()).toBe(false);
    expect(body.contents().length).toBe(0);
  });

  it('T8: a body not yet read to its end is not replayable', async () => {
    const body = new ReplayableBody(requestOf(chunksOf(10)), 1024);
    expect(body.replayable()).toBe(false);
    await sendAll(body);
    expect(body.replayable()).toBe(true);
  });

  it('after release (the exchange is over) nothing is kept and the request is not replayable', async () => {
    const body = new ReplayableBody(requestOf(chunksOf(40 * KiB)), 1024 * KiB);
    await sendAll(body);
    body.release();
    expect(body.replayable()).toBe(false);
    expect(body.contents().length).toBe(0);
  });
});
