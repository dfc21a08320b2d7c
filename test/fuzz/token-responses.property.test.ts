import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sidecar } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { fuzzSettings, fuzzTestTimeout, RunCounter } from '../helpers/fuzz-settings.js';
import { generatedSecret } from '../helpers/harness.js';
import { sendRaw, WEBSOCKET_UPGRADE } from '../helpers/raw-client.js';
import { startHostileTokenServer, type HostileTokenServer, type RawAnswer } from '../helpers/fault-token-server.js';
import { startHeaderRecordingUpstream, type HeaderRecordingUpstream } from '../helpers/ws-upstream.js';

/*
 * §9 R1-R4 as properties: whatever a token endpoint answers (any JSON value in any field, odd
 * bytes, odd statuses and headers), through a real sidecar on real sockets:
 * - no uncaught exception or unhandled rejection;
 * - every client request and WebSocket upgrade gets an HTTP answer;
 * - no header that could not travel ever reaches the upstream;
 * - no secret (the client secret or password, any token the server issued) in any output.
 */

type Dialect = 'session' | 'oauth2';

/** Each token value carries a unique core, so a leak is found by searching for the core. */
const tokenValue = fc
  .tuple(
    fc.constantFrom('', ' ', '\n', '\r\n', '\r\nX-Injected: evil', '\u0000', 'ö', '\u001b[2J', '\t', 'é\n', ' x'),
    fc.constantFrom('', '', '', '\n', ' ', '\u00a0', '\u2028'),
  )
  .map(([before, after]) => ({ core: `core${randomUUID().replaceAll('-', '')}`, before, after }));

const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(0, -1, 1e308, -1e308, 3600, '3600', 'abc', '', null, true, [], {}, 2 ** 53 + 1, 0.5),
  fc.string({ unit: 'binary', maxLength: 30 }),
);

const responseArbitrary = fc.record({
  // Mostly 200s, so most cases reach the token checks.
  status: fc.oneof(
    { arbitrary: fc.constant(200), weight: 6 },
    { arbitrary: fc.constantFrom(201, 204, 400, 401, 403, 408, 429, 500, 502, 503), weight: 4 },
  ),
  token: tokenValue,
  refresh: fc.option(tokenValue, { nil: undefined }),
  tokenType: fc.option(fc.oneof(fc.constantFrom('Bearer', 'bearer', 'MAC', 'DPoP', 'N_A'), oddValue), {
    nil: undefined,
  }),
  lifetime: fc.option(oddValue, { nil: undefined }),
  expiration: fc.option(oddValue, { nil: undefined }),
  success: fc.option(fc.oneof(fc.boolean(), oddValue), { nil: undefined }),
  message: fc.option(fc.constantFrom('echo-body', 'echo-authorization', 'escapes', 'long'), { nil: undefined }),
  extra: fc.dictionary(fc.string({ maxLength: 8 }), oddValue, { maxKeys: 3 }),
  shape: fc.oneof(
    { arbitrary: fc.constant('object' as const), weight: 6 },
    {
      arbitrary: fc.constantFrom('bom' as const, 'array' as const, 'bytes' as const, 'empty' as const, 'html' as const),
      weight: 4,
    },
  ),
  bytes: fc.uint8Array({ maxLength: 64 }),
  retryAfter: fc.option(
    fc.oneof(
      fc.constantFrom('20', '0', '-1', '99999999', 'soon', 'Wed, 21 Oct 2015 07:28:00 GMT', ''),
      fc.string({ maxLength: 12 }),
    ),
    { nil: undefined },
  ),
  date: fc.option(
    fc.oneof(
      fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()),
      fc.string({ maxLength: 12 }),
    ),
    { nil: undefined },
  ),
});
type GeneratedResponse = typeof responseArbitrary extends fc.Arbitrary<infer T> ? T : never;

function spell(value: { core: string; before: string; after: string }): string {
  return `${value.before}${value.core}${value.after}`;
}

function render(
  dialect: Dialect,
  generated: GeneratedResponse,
  request: { body: string; headers: Record<string, string | string[] | undefined> },
): RawAnswer {
  const headers: Record<string, string> = {};
  // Header values as latin1 bytes: whatever the generator made, minus what cannot be written at all.
  const headerSafe = (text: string) => text.replace(/[^\t\x20-\x7e\x80-\xff]/g, '');
  if (generated.retryAfter !== undefined) headers['retry-after'] = headerSafe(generated.retryAfter);
  if (generated.date !== undefined) headers.date = headerSafe(generated.date);
  const messages: Record<string, string> = {
    'echo-body': `invalid credentials for ${request.body}`,
    'echo-authorization': `bad client ${String(request.headers.authorization)}`,
    escapes: 'no\n12:00:00.000 INFO  forged \u001b[2J\u009b31m',
    long: 'x'.repeat(3000),
  };
  const fields: Record<string, unknown> = { ...generated.extra };
  if (dialect === 'session') {
    fields.token = spell(generated.token);
    if (generated.refresh !== undefined) fields.refreshToken = spell(generated.refresh);
    if (generated.lifetime !== undefined) fields.tokenLifetime = generated.lifetime;
    if (generated.expiration !== undefined) fields.tokenExpiration = generated.expiration;
    if (generated.success !== undefined) fields.success = generated.success;
    if (generated.message !== undefined) fields.message = messages[generated.message];
  } else {
    fields.access_token = spell(generated.token);
    if (generated.refresh !== undefined) fields.refresh_token = spell(generated.refresh);
    if (generated.tokenType !== undefined) fields.token_type = generated.tokenType;
    if (generated.lifetime !== undefined) fields.expires_in = generated.lifetime;
    if (generated.message !== undefined) {
      fields.error = 'invalid_client';
      fields.error_description = messages[generated.message];
    }
  }
  const json = JSON.stringify(fields);
  const bodies: Record<GeneratedResponse['shape'], string | Buffer> = {
    object: json,
    bom: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]),
    array: `[${json}]`,
    bytes: Buffer.from(generated.bytes),
    empty: '',
    html: `<html>${json}</html>`,
  };
  return { status: generated.status, headers, body: generated.status === 204 ? '' : bodies[generated.shape] };
}

let tokenServer: HostileTokenServer;
let upstream: HeaderRecordingUpstream;
const crashes: unknown[] = [];
const onCrash = (error: unknown) => crashes.push(error);

beforeAll(async () => {
  tokenServer = await startHostileTokenServer(() => ({ status: 500 }));
  upstream = await startHeaderRecordingUpstream();
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
});

afterAll(async () => {
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
  await tokenServer.close();
  await upstream.close();
});

async function oneCase(dialect: Dialect, first: GeneratedResponse, second: GeneratedResponse): Promise<void> {
  const secret = generatedSecret('secret');
  const answers = [first, second];
  tokenServer.answer = (request, index) => render(dialect, answers[Math.min(index, 1)] ?? first, request);
  tokenServer.requests.length = 0;
  upstream.received.length = 0;
  const clock = new FakeClock();
  const log = captureLogger('debug');
  const auth =
    dialect === 'session'
      ? {
          flow: 'session',
          loginUrl: tokenServer.url('/login'),
          refreshUrl: tokenServer.url('/refresh'),
          username: 'u',
          password: '${SECRET}',
        }
      : { flow: 'oauth2', tokenUrl: tokenServer.url('/token'), clientId: 'my-app', clientSecret: '${SECRET}' };
  const config = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      accounts: {
        acct: { upstream: upstream.url, default: true, refresh: { waitForToken: '1s', minInterval: '1s' }, auth },
      },
    },
    { env: { SECRET: secret } },
  );
  const sidecar = new Sidecar(config, { clock, logger: log.logger, defaultMetrics: false, random: () => 0.5 });
  await sidecar.start();
  const outputs: string[] = [];
  try {
    for (let round = 0; round < 2; round++) {
      await sidecar.settled();
      // A request may wait for a token (T7) on the fake clock: time passes until it is answered.
      const whileTimePasses = async <T>(work: Promise<T>): Promise<T> => {
        let done = false;
        const result = work.finally(() => (done = true));
        for (let step = 0; step < 100 && !done; step++) await clock.advance(250, () => sidecar.settled());
        return result;
      };
      const proxied = await whileTimePasses(fetch(`${sidecar.dataUrl()}/x`, { signal: AbortSignal.timeout(10_000) }));
      expect(proxied.status).toBeGreaterThanOrEqual(200);
      outputs.push(await proxied.text());
      const upgraded = await whileTimePasses(
        sendRaw(new URL(sidecar.dataUrl()).port, WEBSOCKET_UPGRADE, { untilHead: true }),
      );
      expect(upgraded).toMatch(/^HTTP\/1\.1 \d{3} /);
      outputs.push(upgraded);
      for (const path of ['/readyz', '/status', '/metrics'])
        outputs.push(await (await fetch(`${sidecar.adminUrl()}${path}`)).text());
      outputs.push(await (await fetch(`${sidecar.adminUrl()}/status`, { headers: { accept: 'text/html' } })).text());
      // Far enough for the next token request (a refresh, a retry or a login after a rejection).
      await clock.advance(6 * 60_000, () => sidecar.settled());
    }
  } finally {
    await sidecar.stop();
  }
  outputs.push(log.text());
  for (const request of upstream.received) {
    const authorization = request.headers.authorization;
    expect(authorization).toMatch(/^Bearer [\x21-\x7e]+$/);
    expect(request.headers['x-injected']).toBeUndefined();
  }
  const cores = [first, second]
    .flatMap((generated) => [generated.token.core, generated.refresh?.core])
    .filter((core) => core !== undefined);
  for (const output of outputs) {
    expect(output).not.toContain(secret);
    for (const core of cores) expect(output).not.toContain(core);
  }
  expect(crashes).toEqual([]);
}

describe('R1-R4 properties: generated token responses through a real sidecar', () => {
  const counter = new RunCounter();
  it.each<Dialect>(['session', 'oauth2'])(
    'R1-R4: whatever the %s token endpoint answers, the sidecar stays up, answers every client, sends only header-safe tokens and leaks no secret',
    async (dialect) => {
      await fc.assert(
        fc.asyncProperty(responseArbitrary, responseArbitrary, async (first, second) => {
          counter.count += 1;
          await oneCase(dialect, first, second);
        }),
        fuzzSettings(40),
      );
      counter.report(`token responses (${dialect})`);
    },
    fuzzTestTimeout(120_000),
  );
});
