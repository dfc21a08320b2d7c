import { afterEach, describe, expect, it } from 'vitest';
import { AnswerBody } from '../../src/proxy/answer-body.js';
import type { Transport } from '../../src/proxy/transport.js';
import type { ActiveToken } from '../../src/tokens/active-token.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { activeToken, startDataPlane, type DataPlaneHarness, type StubTokens } from '../helpers/data-plane.js';
import {
  getAndClose,
  rawExchange,
  rawHead,
  startRawUpstream,
  statusLines,
  websocketUpgrade,
  type RawUpstream,
} from '../helpers/raw-upstream.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

/** What Java's HttpClient sends on plain http by default: a GET that offers an upgrade to h2c. */
function h2cOffer(target = '/x'): string {
  return `GET ${target} HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`;
}

const OK_ANSWER = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

async function upstreamAnswering(
  answer: Parameters<typeof startRawUpstream>[0] = () => OK_ANSWER,
): Promise<RawUpstream> {
  const upstream = await startRawUpstream(answer);
  cleanups.push(() => upstream.close());
  return upstream;
}

async function plane(
  upstream: RawUpstream,
  tokens: StubTokens,
  options: { retryOn?: number[]; transport?: Transport; connections?: number; clock?: FakeClock } = {},
): Promise<DataPlaneHarness> {
  const harness = await startDataPlane({ upstream: upstream.url, tokens, ...options });
  cleanups.push(() => harness.close());
  return harness;
}

/** The JSON body of the last answer in a raw exchange. */
function lastBody(raw: string): Record<string, unknown> {
  return JSON.parse(raw.slice(raw.lastIndexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
}

/** A token object whose every use throws: stands for any bug on the way to the upstream. */
function explodingToken(): ActiveToken {
  const boom = () => {
    throw new Error('boom');
  };
  return {
    secret: { reveal: boom, fingerprint: () => 'deadbeef' },
    generation: 1,
    expiresAt: Number.MAX_SAFE_INTEGER,
    authorizationHeader: boom,
  } as unknown as ActiveToken;
}

/** A data plane with a good token whose request counting throws: stands for a bug after the answer. */
async function planeWhoseMetricsThrow(): Promise<DataPlaneHarness> {
  const upstream = await upstreamAnswering();
  const harness = await startDataPlane({
    upstream: upstream.url,
    tokens: { current: () => activeToken('good-token') },
    metrics: {
      observe: () => {
        throw new Error('metrics broke');
      },
    },
  });
  cleanups.push(() => harness.close());
  return harness;
}

/** Answers written on a raw socket (upgrades, CONNECT) name their code in the status line. */
const RAW_503 = 'HTTP/1.1 503 token unavailable';
const RAW_502 = 'HTTP/1.1 502 upstream unreachable';

/** Each carries the marker `Zq9x` (but the empty one), so a test can tell the token never leaked. */
const UNSAFE_TOKENS = ['tok-Zq9x-1\n', 'abc-Zq9x\r\nX-Injected: evil', ' Zq9x-lead', 'Zq9x\u0000nul', 'tök-Zq9x', ''];

describe('R1: the data plane never writes a token that is not header-safe', () => {
  it.each(UNSAFE_TOKENS)(
    'R1: a request with token %j gets 503 token_unavailable saying why, never the token; nothing is sent upstream',
    async (value) => {
      const upstream = await upstreamAnswering();
      const { url, log, observed } = await plane(upstream, { current: () => activeToken(value) });
      const raw = await rawExchange(url, getAndClose());
      expect(statusLines(raw)).toEqual(['HTTP/1.1 503 Service Unavailable']);
      expect(raw).toMatch(/\r\nretry-after: 1\r\n/i);
      const body = lastBody(raw);
      expect(body).toMatchObject({ error: 'token_unavailable', account: 'crm' });
      expect(String(body.message)).toContain('not header-safe');
      expect(upstream.requests).toHaveLength(0);
      expect(observed).toEqual([503]);
      expect(raw).not.toContain('Zq9x');
      expect(log.text()).not.toContain('Zq9x');
    },
  );

  it.each(UNSAFE_TOKENS)(
    'R1: a WebSocket upgrade with token %j gets 503 on its raw socket; nothing is sent upstream; the process lives',
    async (value) => {
      const upstream = await upstreamAnswering();
      let token = activeToken(value);
      const { url, observed } = await plane(upstream, { current: () => token });
      const raw = await rawExchange(url, websocketUpgrade());
      expect(statusLines(raw)).toEqual([RAW_503]);
      expect(lastBody(raw)).toMatchObject({
        error: 'token_unavailable',
        account: 'crm',
        message: expect.stringContaining('not header-safe'),
      });
      expect(upstream.requests).toHaveLength(0);
      expect(observed).toEqual([503]);
      token = activeToken('good-token');
      expect(statusLines(await rawExchange(url, getAndClose()))).toEqual(['HTTP/1.1 200 OK']);
    },
  );

  it('R1: on the cold-start path too (the token arrives while the upgrade or the request waits for it)', async () => {
    const upstream = await upstreamAnswering();
    const { url } = await plane(upstream, {
      current: () => undefined,
      waitForToken: () => Promise.resolve(activeToken('abc\r\nX-Injected: evil')),
    });
    const upgrade = await rawExchange(url, websocketUpgrade());
    const request = await rawExchange(url, getAndClose());
    expect(statusLines(upgrade)).toEqual([RAW_503]);
    expect(statusLines(request)).toEqual(['HTTP/1.1 503 Service Unavailable']);
    expect(upstream.requests).toHaveLength(0);
  });

  it('R1: a replacement token that is not header-safe is not used for the T8 replay either', async () => {
    const upstream = await upstreamAnswering(() => 'HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope');
    const { url } = await plane(upstream, {
      current: () => activeToken('good-token'),
      replacementFor: () => Promise.resolve(activeToken('tok-2\n')),
    });
    const raw = await rawExchange(url, getAndClose());
    expect(statusLines(raw)).toEqual(['HTTP/1.1 503 Service Unavailable']);
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]?.headers.authorization).toBe('Bearer good-token');
  });
});

describe('F5: no throw on any entry point can crash the process; the client always gets an answer', () => {
  it('F5: a throw while handling an upgrade answers 502 on the raw socket and is logged', async () => {
    const upstream = await upstreamAnswering();
    const { url, log } = await plane(upstream, {
      current: () => {
        throw new Error('boom');
      },
    });
    const raw = await rawExchange(url, websocketUpgrade());
    expect(statusLines(raw)).toEqual([RAW_502]);
    expect(lastBody(raw)).toMatchObject({ error: 'upstream_unreachable', account: 'crm' });
    expect(log.lines().some((line) => line.level === 50 && String(line.msg).includes('upgrade'))).toBe(true);
  });

  it('F5: a throw in the continuation after a cold-start wait answers 502 on the raw socket, and for plain HTTP', async () => {
    const upstream = await upstreamAnswering();
    const { url } = await plane(upstream, {
      current: () => undefined,
      waitForToken: () => Promise.resolve(explodingToken()),
    });
    expect(statusLines(await rawExchange(url, websocketUpgrade()))).toEqual([RAW_502]);
    const plain = await rawExchange(url, getAndClose());
    expect(statusLines(plain)).toEqual(['HTTP/1.1 502 Bad Gateway']);
    expect(lastBody(plain)).toMatchObject({ error: 'upstream_unreachable' });
  });

  it('F5: a throw while handling a plain request, or an h2c upgrade offer, answers 502 JSON', async () => {
    const upstream = await upstreamAnswering();
    const { url } = await plane(upstream, { current: () => explodingToken() });
    expect(statusLines(await rawExchange(url, getAndClose()))).toEqual(['HTTP/1.1 502 Bad Gateway']);
    const h2c = await rawExchange(
      url,
      'GET /x HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    );
    expect(statusLines(h2c)).toEqual(['HTTP/1.1 502 Bad Gateway']);
  });

  it('F5: a throw while counting a finished request is logged; the client has its answer and the connection goes on', async () => {
    const harness = await planeWhoseMetricsThrow();
    const raw = await rawExchange(
      harness.url,
      'GET /a HTTP/1.1\r\nhost: localhost\r\n\r\nGET /b HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n',
    );
    expect(statusLines(raw)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    const logged = harness.log.lines().filter((line) => line.level === 50);
    expect(logged.length).toBe(2);
    expect(JSON.stringify(logged[0])).toContain('finishing a request');
  });

  it('F5: a throw while refusing a CONNECT is logged; the client has its 405 and the process lives', async () => {
    const harness = await planeWhoseMetricsThrow();
    const raw = await rawExchange(harness.url, 'CONNECT other.example:443 HTTP/1.1\r\nhost: other.example:443\r\n\r\n');
    expect(statusLines(raw)).toEqual(['HTTP/1.1 405 method not allowed']);
    expect(harness.log.lines().some((line) => line.level === 50)).toBe(true);
  });
});

describe('R3: upstream answers pass through as the upstream sent them', () => {
  /** `résumé` as UTF-8 bytes, written one byte per character. */
  const RESUME_UTF8 = 'r\xc3\xa9sum\xc3\xa9';

  it('R3: header values with bytes outside ASCII reach the client byte for byte (sized answer, Set-Cookie twice, Location)', async () => {
    const headers = `content-disposition: attachment; filename="${RESUME_UTF8}.pdf"\r\nset-cookie: a=${RESUME_UTF8}\r\nset-cookie: b=\xe9\r\nlocation: /docs/${RESUME_UTF8}\r\nx-latin1: caf\xe9`;
    const upstream = await upstreamAnswering(() => `HTTP/1.1 200 OK\r\n${headers}\r\ncontent-length: 2\r\n\r\nok`);
    const { url } = await plane(upstream, { current: () => activeToken('good-token') });
    const raw = await rawExchange(url, getAndClose());
    expect(statusLines(raw)).toEqual(['HTTP/1.1 200 OK']);
    for (const line of headers.split('\r\n')) expect(raw).toContain(`${line}\r\n`);
  });

  it('R3: the same for an answer of unknown length (its head is sent at once, before any body)', async () => {
    const upstream = await upstreamAnswering(
      () =>
        `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-disposition: inline; filename="${RESUME_UTF8}"\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n`,
    );
    const { url } = await plane(upstream, { current: () => activeToken('good-token') });
    const raw = await rawExchange(url, getAndClose());
    expect(raw).toContain(`content-disposition: inline; filename="${RESUME_UTF8}"\r\n`);
  });

  it('R3: a reason phrase in UTF-8 reaches the client byte for byte', async () => {
    const upstream = await upstreamAnswering(() => `HTTP/1.1 200 Tr\xc3\xa8s bien\r\ncontent-length: 2\r\n\r\nok`);
    const { url } = await plane(upstream, { current: () => activeToken('good-token') });
    expect(statusLines(await rawExchange(url, getAndClose()))).toEqual(['HTTP/1.1 200 Tr\xc3\xa8s bien']);
  });

  it.each([
    [
      '304 with Content-Length',
      'GET',
      'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 1234\r\n\r\n',
      'HTTP/1.1 304 Not Modified',
    ],
    [
      '204 with Content-Length',
      'DELETE',
      'HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n',
      'HTTP/1.1 204 No Content',
    ],
    ['200 to HEAD with Content-Length', 'HEAD', 'HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n', 'HTTP/1.1 200 OK'],
  ])(
    'R3: a %s is passed back with no body and the Content-Length as sent; the connection stays usable',
    async (_label, method, answer, statusLine) => {
      const upstream = await upstreamAnswering((_request, index) => (index === 0 ? answer : OK_ANSWER));
      const { url, observed } = await plane(upstream, { current: () => activeToken('good-token') });
      const raw = await rawExchange(
        url,
        `${method} /first HTTP/1.1\r\nhost: localhost\r\n\r\n${getAndClose('/second')}`,
      );
      expect(statusLines(raw)).toEqual([statusLine, 'HTTP/1.1 200 OK']);
      const first = raw.slice(0, raw.indexOf('HTTP/1.1 200 OK', 1));
      const declared = /content-length: (\d+)/i.exec(answer)?.[1];
      expect(first).toMatch(new RegExp(`content-length: ${declared}\\r\\n`, 'i'));
      // No body: the second answer starts right after the first head.
      expect(first.endsWith('\r\n\r\n')).toBe(true);
      expect(raw.endsWith('ok')).toBe(true);
      expect(observed).toEqual([Number(statusLine.slice(9, 12)), 200]);
    },
  );

  it('R3/T8: a held rejection to HEAD is passed back with the Content-Length as sent, no body, and the connection stays usable', async () => {
    const upstream = await upstreamAnswering((_request, index) =>
      index === 0 ? 'HTTP/1.1 401 Unauthorized\r\ncontent-length: 40\r\n\r\n' : OK_ANSWER,
    );
    const { url, replays } = await plane(upstream, { current: () => activeToken('good-token') });
    const raw = await rawExchange(url, `HEAD /first HTTP/1.1\r\nhost: localhost\r\n\r\n${getAndClose('/second')}`);
    expect(statusLines(raw)).toEqual(['HTTP/1.1 401 Unauthorized', 'HTTP/1.1 200 OK']);
    expect(raw.slice(0, raw.indexOf('HTTP/1.1 200 OK'))).toMatch(/content-length: 40\r\n(.+\r\n)*\r\n$/i);
    expect(replays).toEqual(['no_token']);
  });

  it.each([
    [
      'Content-Length and Transfer-Encoding both',
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    ],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!'],
    ['a control character in a header value', 'HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 2\r\n\r\nok'],
  ])(
    'R3: an answer that cannot be framed for the client (%s) becomes 502, and the client connection stays usable',
    async (_label, answer) => {
      const upstream = await upstreamAnswering((_request, index) => (index === 0 ? answer : OK_ANSWER));
      const { url } = await plane(upstream, { current: () => activeToken('good-token') });
      const raw = await rawExchange(url, `GET /first HTTP/1.1\r\nhost: localhost\r\n\r\n${getAndClose('/second')}`);
      expect(statusLines(raw)).toEqual(['HTTP/1.1 502 Bad Gateway', 'HTTP/1.1 200 OK']);
      expect(raw).toContain('"error":"upstream_unreachable"');
    },
  );

  it('R3: an interim 103 with Content-Length does not disturb the final answer or the connection', async () => {
    const upstream = await upstreamAnswering((_request, index) =>
      index === 0
        ? 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\ncontent-length: 5\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst'
        : OK_ANSWER,
    );
    const { url } = await plane(upstream, { current: () => activeToken('good-token') });
    const raw = await rawExchange(url, `GET /first HTTP/1.1\r\nhost: localhost\r\n\r\n${getAndClose('/second')}`);
    expect(statusLines(raw)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(raw).toContain('first');
  });

  it.each([
    ['a header value Node cannot write', { 'x-name': 'caf\u20ac', 'set-cookie': ['session=upstream'] }, 'OK'],
    ['a reason phrase Node cannot write', { 'set-cookie': ['session=upstream'] }, 'caf\u20ac\r\nx: y'],
  ])(
    "R3: %s becomes a clean 502: its own status line, none of the upstream's headers",
    async (_label, headers, statusMessage) => {
      // A transport that hands over what undici never would: proves the fence does not rely on it.
      const transport: Transport = (call) => {
        setImmediate(() =>
          call.onAnswer({
            statusCode: 200,
            statusMessage,
            headers,
            body: new AnswerBody({ pause: () => undefined, resume: () => undefined }),
          }),
        );
        return { abort: () => undefined };
      };
      const upstream = await upstreamAnswering();
      const { url, plane: dataPlane } = await plane(
        upstream,
        { current: () => activeToken('good-token') },
        { transport },
      );
      const first = await rawExchange(url, getAndClose());
      // While draining, a response already carries a header before the upstream's are added.
      dataPlane.startDraining(() => undefined);
      const draining = await rawExchange(url, getAndClose());
      for (const raw of [first, draining]) {
        expect(statusLines(raw)).toEqual(['HTTP/1.1 502 Bad Gateway']);
        expect(raw).not.toContain('session=upstream');
        expect(lastBody(raw)).toMatchObject({ error: 'upstream_unreachable', account: 'crm' });
      }
    },
  );

  it('R3: an upgrade the upstream refuses (chunked, obs-text) reaches the client framed and byte for byte', async () => {
    const upstream = await upstreamAnswering(
      () =>
        `HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm="${RESUME_UTF8}"\r\ntransfer-encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\n\r\n`,
    );
    const { url } = await plane(upstream, { current: () => activeToken('good-token') });
    const raw = await rawExchange(url, websocketUpgrade());
    expect(statusLines(raw)).toEqual(['HTTP/1.1 401 Unauthorized']);
    expect(raw).toContain(`www-authenticate: Bearer realm="${RESUME_UTF8}"\r\n`);
    // Framed as declared: either chunked with its chunks, or ended by the close with the bare body.
    if (/transfer-encoding: chunked/i.test(raw)) expect(raw.endsWith('4\r\nnope\r\n0\r\n\r\n')).toBe(true);
    else expect(raw.endsWith('\r\n\r\nnope')).toBe(true);
  });

  it('R3: the 101 of an upgrade reaches the client byte for byte (reason phrase, obs-text, header order and case)', async () => {
    const head = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Room: ${RESUME_UTF8}\r\n\r\n`;
    const upstream = await upstreamAnswering(() => head);
    const { url, observed } = await plane(upstream, { current: () => activeToken('good-token') });
    expect(await rawHead(url, websocketUpgrade())).toBe(head);
    expect(upstream.requests[0]?.headers.authorization).toBe('Bearer good-token');
    expect(observed).toEqual([101]);
  });
});

describe('F5: upgrades the upstream cannot take', () => {
  it('F5: an upgrade to an upstream that refuses connections gets 502 upstream_unreachable JSON on its socket (not a bare close)', async () => {
    const closed = await startRawUpstream(() => OK_ANSWER);
    await closed.close();
    const { url, observed } = await plane(closed, { current: () => activeToken('good-token') });
    const raw = await rawExchange(url, websocketUpgrade());
    expect(statusLines(raw)).toEqual([RAW_502]);
    expect(lastBody(raw)).toMatchObject({
      error: 'upstream_unreachable',
      account: 'crm',
      message: expect.stringContaining('connection refused'),
    });
    expect(observed).toEqual([502]);
  });
});

describe('R10 upgrade offers served as plain requests give their connection back', () => {
  it('R10: h2c upgrade offers in a row on a pool of one are each answered and counted, and each gives its slot back', async () => {
    const upstream = await upstreamAnswering();
    // A fake clock that never moves: a slot not given back would leave the next offer queued for good.
    const { url, observed, slots } = await plane(
      upstream,
      { current: () => activeToken('good-token') },
      { connections: 1, clock: new FakeClock() },
    );
    for (const expected of [[200], [200, 200]]) {
      const raw = await rawExchange(url, h2cOffer());
      expect(statusLines(raw)).toEqual(['HTTP/1.1 200 OK']);
      expect(raw.endsWith('ok')).toBe(true);
      expect(observed).toEqual(expected);
      const release = slots.take();
      expect(release).toBeDefined();
      release?.();
    }
  });
});

describe('P1 the data plane tells the token layer which tokens the upstream accepts', () => {
  it('P1: an answer outside retryOn reports the token it was sent with as accepted; a retryOn answer does not', async () => {
    let status = 200;
    const upstream = await upstreamAnswering(() =>
      status === 200 ? OK_ANSWER : 'HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno',
    );
    const accepted: string[] = [];
    const { url } = await plane(
      upstream,
      {
        current: () => activeToken('tok-1'),
        tokenAccepted: (token) => accepted.push(token.secret.reveal()),
      },
      { retryOn: [401, 403] },
    );
    expect(statusLines(await rawExchange(url, getAndClose()))).toEqual(['HTTP/1.1 200 OK']);
    status = 403;
    expect(statusLines(await rawExchange(url, getAndClose()))).toEqual(['HTTP/1.1 403 Forbidden']);
    expect(accepted).toEqual(['tok-1']);
  });
});
