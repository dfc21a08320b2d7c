import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeToken, startDataPlane, type DataPlaneHarness } from '../helpers/data-plane.js';
import { sendRaw } from '../helpers/raw-client.js';
import { fuzzSettings, fuzzTestTimeout, RunCounter } from '../helpers/fuzz-settings.js';

/*
 * §9 R3 as a property: whatever head (and body framing) an upstream answers with, through the real
 * data plane on sockets: no uncaught error, the client gets an HTTP answer (or, once a head went
 * out, a cut connection: never silence, never a second status line), and the next client is served.
 */

const headerName = fc.oneof(
  fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}$/),
  fc.constantFrom(
    'Content-Length',
    'Transfer-Encoding',
    'Connection',
    'Content-Disposition',
    'Set-Cookie',
    'Location',
    'Trailer',
    'Upgrade',
    'Keep-Alive',
    'Content-Type',
    'Bad Name',
    'X:Y',
    '',
  ),
);
const headerValue = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }).map((text) => Buffer.from(text, 'utf8').toString('latin1')),
  fc.constantFrom(
    'attachment; filename="r\u00c3\u00a9sum\u00c3\u00a9.pdf"',
    '0',
    '5',
    '1234',
    '-1',
    'chunked',
    'gzip, chunked',
    'close',
    'keep-alive',
    '99999999999999999999',
    '\u0000',
    'a\rb',
    'a\nb',
  ),
);
const answer = fc.record({
  version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTX/1.1'),
  status: fc.oneof(
    { arbitrary: fc.constantFrom(200, 204, 304, 401, 404, 500, 100, 101, 103), weight: 3 },
    { arbitrary: fc.integer({ min: 0, max: 1200 }), weight: 1 },
  ),
  reason: fc.oneof(
    fc.constantFrom('OK', '', 'Not Modified', 'D\u00c3\u00a9j\u00c3\u00a0 vu', 'a\u0000b'),
    fc.string({ maxLength: 20 }),
  ),
  headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }),
  body: fc.uint8Array({ maxLength: 64 }),
  framing: fc.constantFrom('length', 'length', 'none', 'chunked', 'wrong-length', 'chunked-broken'),
  method: fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'DELETE'),
});
type GeneratedAnswer = typeof answer extends fc.Arbitrary<infer T> ? T : never;

function render(generated: GeneratedAnswer): Buffer {
  const lines = [`${generated.version} ${generated.status} ${generated.reason}`];
  for (const [name, value] of generated.headers) lines.push(`${name}: ${value}`);
  const body = Buffer.from(generated.body);
  let tail = body;
  if (generated.framing === 'length') lines.push(`Content-Length: ${body.length}`);
  if (generated.framing === 'wrong-length') lines.push(`Content-Length: ${body.length + 7}`);
  if (generated.framing === 'chunked' || generated.framing === 'chunked-broken') {
    lines.push('Transfer-Encoding: chunked');
    const chunk =
      body.length === 0
        ? Buffer.alloc(0)
        : Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n')]);
    tail = Buffer.concat([chunk, Buffer.from(generated.framing === 'chunked' ? '0\r\n\r\n' : 'zz\r\n')]);
  }
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), tail]);
}

/** One answer per connection, then the upstream closes (so a mis-framed body ends, never hangs). */
let current: Buffer = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
let upstream: Server;
let plane: DataPlaneHarness;
const crashes: unknown[] = [];
const onCrash = (error: unknown) => crashes.push(error);

beforeAll(async () => {
  upstream = createServer((socket: Socket) => {
    socket.on('error', () => socket.destroy());
    socket.once('data', () => socket.end(current));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const token = activeToken('tok-fuzz');
  plane = await startDataPlane({
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    tokens: { current: () => token },
  });
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
});

afterAll(async () => {
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
  await plane.close();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

/** One request with no body on a new connection; the whole answer, until the sidecar closes. */
function ask(method: string): Promise<string> {
  return sendRaw(
    new URL(plane.url).port,
    `${method} /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    { silenceMs: 15_000 },
  );
}

describe('R3 property: generated upstream answers through the real data plane', () => {
  const counter = new RunCounter();
  it(
    'R3: whatever the upstream answers, the client gets one HTTP answer or a cut after the head, the next client is served, nothing is thrown',
    async () => {
      await fc.assert(
        fc.asyncProperty(answer, async (generated) => {
          counter.count += 1;
          current = render(generated);
          const raw = await ask(generated.method);
          expect(raw).not.toContain('<silence>');
          expect(raw).toMatch(/^HTTP\/1\.1 \d{3} /);
          // One answer only: no second status line after the first head.
          expect(raw.slice(raw.indexOf('\r\n\r\n')).match(/\r\nHTTP\/1\.1 \d{3} /g) ?? []).toHaveLength(0);
          current = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          expect(await ask('GET')).toMatch(/^HTTP\/1\.1 200 /);
          expect(crashes).toEqual([]);
        }),
        fuzzSettings(150),
      );
      counter.report('upstream answers');
    },
    fuzzTestTimeout(120_000),
  );
});

describe('R3 named answers found by the property above', () => {
  it.each([
    ['a sized answer that breaks off before its first byte', 502, 'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n'],
    [
      'a held 401 (T8) whose chunked body breaks off',
      502,
      'HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    ],
    [
      'Connection sent twice, with obs-text',
      200,
      'HTTP/1.1 200 OK\r\nConnection: a; b="r\u00c3\u00a9"\r\nConnection: x-y\r\nX-Y: 1\r\nContent-Length: 2\r\n\r\nok',
    ],
  ])('R3: %s is answered %i, and the next client is served', async (_name, status, text) => {
    current = Buffer.from(text, 'latin1');
    const raw = await ask('GET');
    expect(raw).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    if (status === 502) expect(raw).toContain('"error":"upstream_unreachable"');
    if (status === 200) expect(raw.toLowerCase()).not.toContain('x-y: 1');
    current = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    expect(await ask('GET')).toMatch(/^HTTP\/1\.1 200 /);
    expect(crashes).toEqual([]);
  });
});
