import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { AnswerBody } from '../../src/proxy/answer-body.js';

/** What the transport was told, in order. */
function flowRecorder() {
  const calls: string[] = [];
  return { calls, flow: { pause: () => calls.push('pause'), resume: () => calls.push('resume') } };
}

/** A client response that records what it was sent; `full` makes write() ask for a drain. */
class FakeClient extends EventEmitter {
  written: string[] = [];
  ended = false;
  destroyed = false;
  full = false;
  write(chunk: Buffer): boolean {
    this.written.push(chunk.toString());
    return !this.full;
  }
  end(chunk?: Buffer): void {
    if (chunk !== undefined) this.written.push(`end:${chunk.toString()}`);
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  asResponse(): ServerResponse {
    return this as unknown as ServerResponse;
  }
}

describe('F2 streaming with backpressure', () => {
  it('F2: chunks that arrive before the client is attached are kept, the upstream paused, then all sent in order', () => {
    const { calls, flow } = flowRecorder();
    const body = new AnswerBody(flow);
    body.push(Buffer.from('a'));
    body.push(Buffer.from('b'));
    expect(calls).toEqual(['pause', 'pause']);
    const client = new FakeClient();
    body.sendTo(client.asResponse());
    expect(client.written).toEqual(['a', 'b']);
    expect(calls.at(-1)).toBe('resume');
    body.push(Buffer.from('c'));
    body.end();
    expect(client.written).toEqual(['a', 'b', 'c']);
    expect(client.ended).toBe(true);
  });

  it('F2: a whole one-chunk answer leaves in a single end(), head and body together', () => {
    const body = new AnswerBody(flowRecorder().flow);
    body.push(Buffer.from('{"ok":true}'));
    body.end();
    const client = new FakeClient();
    body.sendTo(client.asResponse());
    expect(client.written).toEqual(['end:{"ok":true}']);
  });

  it('F2: a slow client pauses the upstream until it drains, with one drain listener however many chunks came', () => {
    const { calls, flow } = flowRecorder();
    const body = new AnswerBody(flow);
    const client = new FakeClient();
    body.sendTo(client.asResponse());
    calls.length = 0;
    client.full = true;
    body.push(Buffer.from('1'));
    body.push(Buffer.from('2'));
    expect(calls).toEqual(['pause', 'pause']);
    expect(client.listenerCount('drain')).toBe(1);
    client.full = false;
    client.emit('drain');
    expect(calls).toEqual(['pause', 'pause', 'resume']);
    expect(client.listenerCount('drain')).toBe(0);
  });
});

describe('T8 upstream rejection and replay', () => {
  it('T8: a rejection body within the limit is held whole', () => {
    const body = new AnswerBody(flowRecorder().flow);
    const held: Array<Buffer | undefined> = [];
    body.hold(10, (whole) => held.push(whole));
    body.push(Buffer.from('unauth'));
    body.push(Buffer.from('ed'));
    body.end();
    expect(held.map((whole) => whole?.toString())).toEqual(['unauthed']);
  });

  it('T8: a rejection body over the limit is not held: the upstream is paused and the client gets every byte', () => {
    const { calls, flow } = flowRecorder();
    const body = new AnswerBody(flow);
    const held: Array<Buffer | undefined> = [];
    body.hold(4, (whole) => held.push(whole));
    body.push(Buffer.from('abc'));
    body.push(Buffer.from('def'));
    expect(held).toEqual([undefined]);
    expect(calls.at(-1)).toBe('pause');
    const client = new FakeClient();
    body.sendTo(client.asResponse());
    body.push(Buffer.from('g'));
    body.end();
    expect(client.written.join('')).toBe('abcdefg');
    expect(client.ended).toBe(true);
  });
});

describe('F5 errors the sidecar produces', () => {
  it('F5: an upstream that breaks mid-answer cuts the client answer, whether streaming or holding', () => {
    const streaming = new AnswerBody(flowRecorder().flow);
    const client = new FakeClient();
    streaming.sendTo(client.asResponse());
    streaming.push(Buffer.from('part'));
    streaming.fail();
    expect(client.destroyed).toBe(true);

    const holding = new AnswerBody(flowRecorder().flow);
    const held: Array<Buffer | undefined> = [];
    holding.hold(100, (whole) => held.push(whole));
    holding.push(Buffer.from('part'));
    holding.fail();
    expect(held).toEqual([undefined]);
    const late = new FakeClient();
    holding.sendTo(late.asResponse());
    expect(late.written).toEqual(['part']);
    expect(late.destroyed).toBe(true);
    expect(late.ended).toBe(false);
  });
});
