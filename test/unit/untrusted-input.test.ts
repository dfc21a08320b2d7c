import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { SessionAuth } from '../../src/config/resolve.js';
import { createFlow } from '../../src/flows/index.js';
import { parseOAuth2Response } from '../../src/flows/oauth2.js';
import { MAX_RETRY_AFTER_MS, retryAfterMs } from '../../src/flows/retry-after.js';
import { parseSessionResponse } from '../../src/flows/session.js';
import type { TokenHttpRequest, TokenHttpResponse } from '../../src/flows/types.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import { TokenManager } from '../../src/tokens/token-manager.js';
import { TokenUnavailableError, type TokenEvents } from '../../src/tokens/types.js';
import { headerSafeTokenProblem, isHeaderSafeToken } from '../../src/util/header-safe.js';
import { formatPrettyLine } from '../../src/util/log-pretty.js';
import { escapeControlCharacters, escapeJsonLine, scrubServerText } from '../../src/util/scrub.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SECOND = 1000;

function answer(status: number, body: string | object, headers: Record<string, string> = {}): TokenHttpResponse {
  return { status, headers, body: typeof body === 'string' ? body : JSON.stringify(body) };
}

const SESSION_AUTH = parseConfig(
  {
    accounts: {
      a: {
        upstream: 'http://api.test',
        auth: {
          flow: 'session',
          loginUrl: 'http://t.test/login',
          refreshUrl: 'http://t.test/refresh',
          username: 'u',
          password: 'p',
        },
      },
    },
  },
  { env: {} },
).accounts[0]?.auth as SessionAuth;

describe('R1 the header-safety rule', () => {
  it.each([
    'tok-1\n',
    'abc\r\nX-Injected: evil',
    ' tok',
    'tok ',
    'to k',
    '',
    'tök',
    'tok\u0000',
    'tok\u007f',
    '\u00a0tok',
  ])('R1: %j is not header-safe', (value) => {
    expect(isHeaderSafeToken(value)).toBe(false);
    expect(headerSafeTokenProblem(value)).toMatch(/^token not header-safe \(.+\)$/);
  });

  it.each(['tok-1', 'eyJhbGciOiJIUzI1NiJ9.e30.abc_-', 'a+b/c==', '~!#$%&*'])('R1: %j is header-safe', (value) => {
    expect(headerSafeTokenProblem(value)).toBeUndefined();
  });

  it('R1: the reason never quotes the token', () => {
    expect(headerSafeTokenProblem('secret-value\n')).not.toContain('secret-value');
  });
});

describe('R1, R2 parsing token responses', () => {
  it.each([
    [
      'session',
      (body: object) => parseSessionResponse(SESSION_AUTH, answer(200, { success: true, tokenLifetime: 60, ...body })),
    ],
    ['oauth2', (body: object) => parseOAuth2Response(answer(200, { token_type: 'Bearer', expires_in: 60, ...body }))],
  ] as const)('R1: an unsafe access or refresh token is an error that spent what was sent (%s)', (dialect, parse) => {
    const [tokenField, refreshField] =
      dialect === 'session' ? ['token', 'refreshToken'] : ['access_token', 'refresh_token'];
    for (const body of [{ [tokenField]: 'tok\n' }, { [tokenField]: 'tok', [refreshField]: 'ref\r\n' }]) {
      const parsed = parse(body);
      expect(parsed).toMatchObject({ outcome: 'error', consumed: true });
      if (parsed.outcome === 'error') expect(parsed.reason).toMatch(/token not header-safe/);
    }
  });

  it('R2: one UTF-8 byte-order mark before the JSON is ignored in both dialects; two are not JSON', () => {
    expect(
      parseSessionResponse(SESSION_AUTH, answer(200, `\ufeff${JSON.stringify({ success: true, token: 't' })}`)).outcome,
    ).toBe('success');
    expect(
      parseOAuth2Response(answer(200, `\ufeff${JSON.stringify({ access_token: 't', token_type: 'Bearer' })}`)).outcome,
    ).toBe('success');
    expect(parseOAuth2Response(answer(200, `\ufeff\ufeff${JSON.stringify({ access_token: 't' })}`)).outcome).toBe(
      'error',
    );
  });

  it.each([
    ['MAC', /token_type "MAC" is not supported/],
    ['DPoP', /token_type "DPoP" is not supported/],
    [42, /token_type a number is not supported/],
    [null, /token_type a null is not supported/],
    ['x\u001b[2Jy', /token_type "x\\u001b\[2Jy" is not supported/],
  ])('R2: token_type %j is an error naming the type', (type, reason) => {
    const parsed = parseOAuth2Response(answer(200, { access_token: 'tok', token_type: type }));
    expect(parsed.outcome).toBe('error');
    if (parsed.outcome === 'error') expect(parsed.reason).toMatch(reason);
  });

  it('R2: token_type Bearer in any case, or none at all, is accepted', () => {
    for (const type of ['Bearer', 'bearer', 'BEARER', undefined])
      expect(parseOAuth2Response(answer(200, { access_token: 'tok', token_type: type })).outcome).toBe('success');
  });
});

describe('R2 Retry-After', () => {
  const now = Date.parse('2026-11-29T10:00:00Z');
  it("R2: seconds, an HTTP date against the server's Date, an HTTP date against the local clock, capped at 5 minutes", () => {
    expect(retryAfterMs(answer(429, '', { 'retry-after': '20' }), now)).toBe(20 * SECOND);
    expect(retryAfterMs(answer(503, '', { 'retry-after': ' 7 ' }), now)).toBe(7 * SECOND);
    const serverNow = 'Sun, 29 Nov 2026 12:00:00 GMT';
    expect(
      retryAfterMs(answer(503, '', { 'retry-after': 'Sun, 29 Nov 2026 12:00:30 GMT', date: serverNow }), now),
    ).toBe(30 * SECOND);
    expect(retryAfterMs(answer(429, '', { 'retry-after': 'Sun, 29 Nov 2026 10:00:45 GMT' }), now)).toBe(45 * SECOND);
    expect(retryAfterMs(answer(429, '', { 'retry-after': '86400' }), now)).toBe(MAX_RETRY_AFTER_MS);
    expect(retryAfterMs(answer(429, '', { 'retry-after': 'Sun, 29 Nov 2026 09:00:00 GMT' }), now)).toBe(0);
  });

  it('R2: no Retry-After, garbage, or another status gives nothing', () => {
    expect(retryAfterMs(answer(429, ''), now)).toBeUndefined();
    expect(retryAfterMs(answer(429, '', { 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(retryAfterMs(answer(429, '', { 'retry-after': 'Fri, 99 Foo 2026 xx GMT' }), now)).toBeUndefined();
    expect(retryAfterMs(answer(429, '', { 'retry-after': '-5' }), now)).toBeUndefined();
    expect(retryAfterMs(answer(500, '', { 'retry-after': '20' }), now)).toBeUndefined();
    expect(retryAfterMs(answer(200, '', { 'retry-after': '20' }), now)).toBeUndefined();
  });
});

/** A token manager whose token endpoint answers what `respond` says, on a fake clock. */
function managerWith(
  respond: (request: TokenHttpRequest, index: number) => TokenHttpResponse,
  auth: Record<string, unknown> = {},
) {
  const clock = new FakeClock();
  const config = parseConfig(
    {
      accounts: {
        acct: {
          upstream: 'http://api.test',
          auth: { flow: 'oauth2', tokenUrl: 'http://t.test/token', clientId: 'c', clientSecret: 's', ...auth },
        },
      },
    },
    { env: {} },
  );
  const account = config.accounts[0];
  if (account === undefined) throw new Error('no account');
  const sent: Array<{ at: number; body: string }> = [];
  const events: TokenEvents = {
    tokenRequest: () => undefined,
    suppressed: () => undefined,
    lifetimeAnomaly: () => undefined,
    clockSkew: () => undefined,
    storeError: () => undefined,
  };
  const log = captureLogger();
  const manager = new TokenManager({
    account: 'acct',
    flow: createFlow(account.auth),
    policy: account.refresh,
    store: new MemoryTokenStore(),
    clock,
    events,
    logger: log.logger,
    send: async (request) => {
      sent.push({ at: clock.now(), body: request.body });
      return respond(request, sent.length - 1);
    },
    random: () => 0.5,
  });
  return { clock, manager, sent, log, advance: (ms: number) => clock.advance(ms, () => manager.settled()) };
}

describe('R2 Retry-After in the token engine', () => {
  it('R2: a 429 with Retry-After: 20 means no token request for 20 s (not one every 5 s), and waiting clients are told 20', async () => {
    const { manager, sent, advance } = managerWith((_request, index) =>
      index < 2
        ? answer(429, { error: 'slow_down' }, { 'retry-after': '20' })
        : answer(200, { access_token: 'tok', token_type: 'Bearer', expires_in: 600 }),
    );
    await manager.start();
    await manager.settled();
    const waiting = manager.waitForToken().catch((error: unknown) => error);
    const refused = await waiting;
    expect(refused).toBeInstanceOf(TokenUnavailableError);
    expect((refused as TokenUnavailableError).retryAfterSeconds).toBe(20);
    await advance(20 * SECOND - 1);
    expect(sent).toHaveLength(1);
    await advance(1);
    expect(sent).toHaveLength(2);
    await advance(20 * SECOND);
    expect(sent.map((request) => request.at - (sent[0]?.at ?? 0))).toEqual([0, 20 * SECOND, 40 * SECOND]);
    expect(manager.status().ready).toBe(true);
  });

  it('R2: a 503 with an absurd Retry-After waits 5 minutes at most', async () => {
    const { manager, sent, advance } = managerWith((_request, index) =>
      index === 0
        ? answer(503, '', { 'retry-after': '999999' })
        : answer(200, { access_token: 'tok', expires_in: 600 }),
    );
    await manager.start();
    await advance(5 * 60 * SECOND);
    expect(sent.map((request) => request.at - (sent[0]?.at ?? 0))).toEqual([0, 5 * 60 * SECOND]);
  });
});

describe('R1, T3 a spent refresh token behind an unusable answer', () => {
  it('R1: after a refresh answered with an unsafe token, that refresh token is never sent again (a login follows)', async () => {
    const { manager, sent, advance } = managerWith((request, index) => {
      if (index === 0)
        return answer(200, { access_token: 'tok-0', token_type: 'Bearer', expires_in: 60, refresh_token: 'ref-0' });
      if (request.body.includes('refresh_token=ref-0'))
        return answer(200, { access_token: 'tok-1\n', token_type: 'Bearer', expires_in: 60, refresh_token: 'ref-1' });
      return answer(200, { access_token: `tok-${index}`, token_type: 'Bearer', expires_in: 60 });
    });
    await manager.start();
    await advance(10 * 60 * SECOND);
    const withRef0 = sent.filter((request) => request.body.includes('refresh_token=ref-0'));
    expect(withRef0).toHaveLength(1);
    expect(sent[2]?.body).toContain('grant_type=client_credentials');
  });
});

describe('R4 scrubbing server-provided text', () => {
  const password = new Secret('p@ss w"rd&=+');
  it('R4: every spelling of a secret (as is, JSON-escaped, percent- and form-encoded) becomes [redacted]', () => {
    const text = `a ${password.reveal()} b ${JSON.stringify(password.reveal())} c ${encodeURIComponent(password.reveal())} d ${new URLSearchParams({ p: password.reveal() }).toString()}`;
    const scrubbed = scrubServerText(text, [password], 10_000);
    expect(scrubbed).not.toContain('p@ss');
    expect(scrubbed).not.toContain('p%40ss');
    expect(scrubbed.match(/\[redacted\]/g)).toHaveLength(4);
  });

  it('R4: a secret that contains another is redacted whole; undefined entries are skipped', () => {
    expect(scrubServerText('x abcdef y', [new Secret('abc'), undefined, new Secret('abcdef')])).toBe('x [redacted] y');
  });

  it('R4: redaction runs before the 200-character cut: no part of a secret survives at the edge', () => {
    const secret = new Secret('S3CRET-VALUE-0123456789');
    const scrubbed = scrubServerText(`${'x'.repeat(190)}${secret.reveal()}`, [secret]);
    expect(scrubbed).toBe(`${'x'.repeat(190)}[redacted]`);
    expect(scrubServerText(`${'x'.repeat(195)}${secret.reveal()}`, [secret])).toBe(`${'x'.repeat(195)}[reda…`);
  });

  it('R4: control characters, terminal escapes and bidi overrides are escaped; other letters kept', () => {
    expect(escapeControlCharacters('a\nb\r\tc\u001b[31m\u0007\u009b\u202eé')).toBe(
      'a\\nb\\r\\tc\\u001b[31m\\u0007\\u009b\\u202eé',
    );
    expect(escapeJsonLine(JSON.stringify({ m: '\u009b\u202e\u001b' }))).toBe('{"m":"\\u009b\\u202e\\u001b"}');
    expect(JSON.parse(escapeJsonLine(JSON.stringify({ m: '\u009b' }))) as unknown).toEqual({ m: '\u009b' });
  });

  it('R4: a pretty log line stays one line with no escape sequence, whatever the message and fields hold', () => {
    const line = formatPrettyLine(
      JSON.stringify({
        level: 40,
        time: 0,
        msg: 'bad\nFAKE \u001b[2J',
        reason: 'x\u001b]0;t\u0007',
        n: { k: '\u009b' },
        plain: 'a\u009bb',
      }),
      { color: false },
    );
    expect(line.split('\n')).toHaveLength(2);
    // eslint-disable-next-line no-control-regex
    expect(line).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});
