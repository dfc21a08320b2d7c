import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { Dispatcher } from 'undici';
import { sendWithUndici, type UpstreamCall } from '../../src/proxy/transport.js';
import type { UpstreamAccount } from '../../src/proxy/upstream.js';

/** A pool that keeps the handler it was given, so a test can play undici's part. */
function capturingPool() {
  const captured: { handler?: Dispatcher.DispatchHandler } = {};
  const pool = {
    dispatch: (_options: unknown, handler: Dispatcher.DispatchHandler) => ((captured.handler = handler), true),
  };
  return { pool, captured };
}

function fakeController() {
  const aborted: unknown[] = [];
  const controller = {
    abort: (reason: unknown) => aborted.push(reason),
    pause: () => undefined,
    resume: () => undefined,
  } as unknown as Dispatcher.DispatchController;
  return { controller, aborted };
}

function callWith(pool: unknown, onAnswer: UpstreamCall['onAnswer'], errors: Error[], method = 'GET'): UpstreamCall {
  const account = { pool, timeouts: { responseMs: 1000, connectMs: 1000 } } as unknown as UpstreamAccount;
  return {
    account,
    method,
    path: '/',
    headers: {},
    body: undefined,
    onAnswer,
    onError: ({ error }) => errors.push(error),
  };
}

/** A client response that records whether it was ended or cut. */
function recordingClient() {
  const client = {
    ended: false,
    destroyed: false,
    end: () => (client.ended = true),
    write: () => true,
    destroy: () => (client.destroyed = true),
    once: () => client,
  };
  return client;
}

describe('F5 errors the sidecar produces', () => {
  it('F5: when passing the answer on throws, the caller is told once (a 502 or a closed connection) and undici is stopped', () => {
    const { pool, captured } = capturingPool();
    const errors: Error[] = [];
    const failure = new Error('writeHead refused');
    sendWithUndici(
      callWith(
        pool,
        () => {
          throw failure;
        },
        errors,
      ),
    );
    const { controller, aborted } = fakeController();
    captured.handler!.onRequestStart!(controller, {});
    expect(() => captured.handler!.onResponseStart!(controller, 200, {}, 'OK')).not.toThrow();
    expect(errors).toEqual([failure]);
    expect(aborted).toEqual([failure]);
    // undici then reports the abort it was asked for: not a second error for the client.
    captured.handler!.onResponseError!(controller, failure);
    expect(errors).toHaveLength(1);
  });
});

describe('F2 streaming with backpressure', () => {
  it('F2: interim 1xx answers are not passed on; the final one is', () => {
    const { pool, captured } = capturingPool();
    const statuses: number[] = [];
    sendWithUndici(callWith(pool, (answer) => statuses.push(answer.statusCode), []));
    const { controller } = fakeController();
    captured.handler!.onRequestStart!(controller, {});
    captured.handler!.onResponseStart!(controller, 103, {}, 'Early Hints');
    captured.handler!.onResponseStart!(controller, 204, {}, 'No Content');
    expect(statuses).toEqual([204]);
  });
});

describe('R3 upstream answers as sent', () => {
  it.each([
    ['GET', 304],
    ['DELETE', 204],
    ['HEAD', 200],
  ])(
    "R3: a %s answered %i ends at its head; undici's later Content-Length mismatch error neither cuts it nor reaches the caller",
    (method, status) => {
      const { pool, captured } = capturingPool();
      const errors: Error[] = [];
      const client = recordingClient();
      sendWithUndici(
        callWith(pool, (answer) => answer.body.sendTo(client as unknown as ServerResponse), errors, method),
      );
      const { controller } = fakeController();
      captured.handler!.onRequestStart!(controller, {});
      captured.handler!.onResponseStart!(controller, status, { 'content-length': '1234' }, 'whatever');
      expect(client.ended).toBe(true);
      // What undici does next for a 204 or 304 with Content-Length (ResponseContentLengthMismatchError).
      captured.handler!.onResponseError!(
        controller,
        Object.assign(new Error('Response body length does not match content-length header'), {
          code: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
        }),
      );
      captured.handler!.onResponseEnd!(controller, {});
      expect(client.destroyed).toBe(false);
      expect(errors).toEqual([]);
    },
  );
});
