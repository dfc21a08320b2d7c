import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzSettings, fuzzTestTimeout, RunCounter } from '../helpers/fuzz-settings.js';
import { sendRaw } from '../helpers/raw-client.js';
import { startHostileTokenServer, type HostileTokenServer } from '../helpers/fault-token-server.js';
import { spawnCli, type RunningCli } from '../helpers/spawn-cli.js';
import { startHeaderRecordingUpstream, type HeaderRecordingUpstream } from '../helpers/ws-upstream.js';

/*
 * §9: hostile input at every entry point of the real CLI — data-plane requests, upgrades, CONNECT,
 * the admin port — never ends the process, and every client gets an answer (or, for bytes that
 * are not HTTP at all, a closed connection: never silence).
 */

let dir: string;
let tokenServer: HostileTokenServer;
let upstream: HeaderRecordingUpstream;
let cli: RunningCli;
let data: URL;
let admin: URL;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bs-entry-'));
  tokenServer = await startHostileTokenServer(() => ({
    status: 200,
    body: JSON.stringify({ access_token: 'tok-entry-points', token_type: 'Bearer', expires_in: 3600 }),
  }));
  upstream = await startHeaderRecordingUpstream();
  writeFileSync(join(dir, 'secret'), 's3cret\n', { mode: 0o600 });
  writeFileSync(
    join(dir, 'sidecar.yaml'),
    `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
accounts:
  acct:
    upstream: ${upstream.url}/base
    default: true
    route: { pathPrefix: /acct }
    auth: { flow: oauth2, tokenUrl: ${tokenServer.url('/token')}, clientId: app, clientSecretFile: ${join(dir, 'secret')} }
`,
  );
  cli = spawnCli(['--config', join(dir, 'sidecar.yaml'), '--log-level', 'debug']);
  const line = await cli.waitForLog((entry) => entry.msg === 'bearer-sidecar listening');
  [data, admin] = [new URL(String(line.data)), new URL(String(line.admin))];
  await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
}, 30_000);

afterAll(async () => {
  if (cli.child.exitCode === null) cli.child.kill('SIGTERM');
  await cli.exited;
  await tokenServer.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
const oddText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '%2e%2e',
    '..',
    '%ef%bc%8e',
    '%c0%ae',
    '%u002e',
    '\\',
    '%5c',
    '//evil.example',
    '#frag',
    '%00',
    '%zz',
    '\u00e9',
    '?a=%ff',
    '\r\n',
  ),
);
const method = fc.oneof(
  fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PATCH', 'PRI'),
  token,
);
const target = fc.oneof(
  fc
    .tuple(fc.constantFrom('/', '/acct/', '/acct', '/other/', '/accounts/acct/', '/accounts/'), oddText)
    .map(([prefix, rest]) => `${prefix}${rest}`),
  fc.constantFrom(
    '*',
    'http://127.0.0.1:1/x',
    'example.com:443',
    '',
    '/metrics',
    '/status?format=json',
    '/accounts/acct/refresh',
    '/readyz',
  ),
);
const header = fc.tuple(
  fc.oneof(
    token,
    fc.constantFrom(
      'Host',
      'Content-Length',
      'Transfer-Encoding',
      'Upgrade',
      'Connection',
      'Expect',
      'Origin',
      'Authorization',
      'X-Sidecar-Account',
      'Accept',
    ),
  ),
  fc.oneof(
    oddText,
    fc.constantFrom(
      'websocket',
      'h2c',
      'chunked',
      'upgrade',
      'close',
      'keep-alive, upgrade',
      '100-continue',
      'text/html',
      'acct',
      '5',
      '-1',
      '99999999999999999999',
    ),
  ),
);
const request = fc.record({
  method,
  target,
  version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x'),
  headers: fc.array(header, { maxLength: 6 }),
  body: fc.uint8Array({ maxLength: 32 }),
  port: fc.constantFrom('data', 'data', 'admin'),
});

type GeneratedRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;

function render(generated: GeneratedRequest): Buffer {
  const lines = [`${generated.method} ${generated.target} ${generated.version}`, 'Host: 127.0.0.1'];
  for (const [name, value] of generated.headers) lines.push(`${name}: ${value}`);
  const body = Buffer.from(generated.body);
  const framed = generated.headers.some(([name]) => /^(content-length|transfer-encoding)$/i.test(name));
  if (!framed && body.length > 0) lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), framed ? Buffer.alloc(0) : body]);
}

/** Writes `bytes` and half-closes, then reads until the answer head is in or the server closes. */
function exchangeRaw(port: number, bytes: Buffer): Promise<string> {
  return sendRaw(port, bytes, { end: true, untilHead: true });
}

async function alive(): Promise<void> {
  expect(cli.child.exitCode).toBeNull();
  expect((await fetch(new URL('/healthz', admin))).status).toBe(200);
}

describe('§9 hostile input at every entry point of the real CLI', () => {
  const counter = new RunCounter();
  it(
    '§9 R1, R3: any request head at the data plane or the admin port gets an answer or a closed connection, and the process lives',
    async () => {
      await fc.assert(
        fc.asyncProperty(request, async (generated) => {
          counter.count += 1;
          const raw = await exchangeRaw(Number(generated.port === 'data' ? data.port : admin.port), render(generated));
          expect(raw).not.toContain('<silence>');
          if (raw !== '') expect(raw).toMatch(/^HTTP\/1\.[01] \d{3} /);
          expect(raw).not.toContain('tok-entry-points');
          expect(raw).not.toContain('s3cret');
          await alive();
        }),
        fuzzSettings(150),
      );
      counter.report('entry points');
      await alive();
      expect(cli.stdout() + cli.stderr()).not.toMatch(/uncaught|unhandled/i);
    },
    fuzzTestTimeout(120_000),
  );
});

describe('§9 named hostile inputs at the entry points', () => {
  it.each([
    [
      'admin',
      'POST /accounts/%zz/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n',
      400,
      'bad_request',
    ],
    [
      'admin',
      'POST /accounts/acct/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{bad}',
      202,
      undefined,
    ],
    ['admin', 'GET /nothing%ff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 404, 'no_route'],
    ['data', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405, 'method_not_allowed'],
    ['data', 'GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 400, 'bad_request'],
    [
      'data',
      'POST /acct/x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 3\r\n\r\nabc',
      400,
      'bad_request',
    ],
  ])('F5: %s port, %j gets %i %s as JSON and no stack trace', async (port, text, status, code) => {
    const raw = await exchangeRaw(Number(port === 'data' ? data.port : admin.port), Buffer.from(text, 'latin1'));
    expect(raw).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    if (code !== undefined) {
      expect(raw.toLowerCase()).toContain('content-type: application/json');
    }
    expect(raw).not.toMatch(/\bat \S+ \(|node_modules/);
    await alive();
  });
});
