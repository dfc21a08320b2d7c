import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { TrustedProxies } from '../../src/proxy/trusted-proxies.js';
import { BlockList } from 'node:net';
import { describe, expect, it } from 'vitest';
import { errorBody, SIDECAR_ERRORS } from '../../src/proxy/errors.js';
import { InboundPolicy } from '../../src/proxy/inbound.js';
import { joinUpstreamPath, matchesPrefix, pathProblem, splitOriginForm, targetProblem } from '../../src/proxy/paths.js';
import { Router, type RoutableAccount } from '../../src/proxy/route.js';
import { TokenNotHeaderSafeError } from '../../src/proxy/bearer.js';
import {
  answerHasNoBody,
  clientReasonPhrase,
  clientResponseHeaders,
  upstreamRequestHeaders,
} from '../../src/proxy/upstream.js';
import { ActiveToken } from '../../src/tokens/active-token.js';
import { Secret } from '../../src/util/secret.js';

function fakeRequest(
  headers: IncomingHttpHeaders = {},
  remoteAddress: string | undefined = '127.0.0.1',
): IncomingMessage {
  return { headers, socket: { remoteAddress } } as unknown as IncomingMessage;
}

describe('§8 paths', () => {
  it.each(['/a/../b', '/a/./b', '/..', '/a/..', '/a/.', '/%2e%2e/x', '/%2E%2e/x', '/.%2e/x', '/%2e/x', '/a/%2E%2E'])(
    '§8: a dot segment (raw or %%2e-encoded, any case) is refused: %s',
    (path) => {
      expect(pathProblem(path)).toBeDefined();
    },
  );

  it.each(['/a/%2f', '/a/%2Fb', '/a%5cb', '/a%5Cb'])('§8: an encoded "/" or "\\" is refused: %s', (path) => {
    expect(pathProblem(path)).toBeDefined();
  });

  it('§8: a raw backslash is refused', () => {
    expect(pathProblem('/a\\b')).toBeDefined();
    expect(pathProblem('/\\..\\x')).toBeDefined();
  });

  it.each(['//other.host/x', '/a//b', '/a/..b', '/...', '/a/.hidden', '/a/b..', '/v1/users/42', '/', '/%2e%2e%2e'])(
    '§8: not a dot segment or a separator, so allowed: %s',
    (path) => {
      expect(pathProblem(path)).toBeUndefined();
    },
  );

  it('§8: the query string is split off and kept verbatim (with its "?")', () => {
    expect(splitOriginForm('/crm/users?b=2&a=1&x=%2e%2e/..')).toEqual({
      path: '/crm/users',
      query: '?b=2&a=1&x=%2e%2e/..',
    });
    expect(splitOriginForm('/a?')).toEqual({ path: '/a', query: '?' });
    expect(splitOriginForm('/a')).toEqual({ path: '/a', query: '' });
    expect(splitOriginForm('/a?x=1?y=2')).toEqual({ path: '/a', query: '?x=1?y=2' });
  });

  it('§8: a dot segment in the query is not a path problem', () => {
    const split = splitOriginForm('/a?next=/../b');
    expect(split).toBeDefined();
    expect(pathProblem(split?.path ?? '')).toBeUndefined();
  });

  it('§8: the upstream path is the base path joined with the rest as strings, never by URL resolution', () => {
    expect(joinUpstreamPath('/v2', '//other.host/x')).toBe('/v2//other.host/x');
    expect(joinUpstreamPath('', '//other.host/x')).toBe('//other.host/x');
    expect(joinUpstreamPath('/v2', '/users')).toBe('/v2/users');
    expect(joinUpstreamPath('/v2/', '/users')).toBe('/v2/users');
    expect(joinUpstreamPath('/v2', '/a//b')).toBe('/v2/a//b');
  });

  it('§8: an empty rest keeps the base path, or "/" when there is none', () => {
    expect(joinUpstreamPath('/v2', '')).toBe('/v2');
    expect(joinUpstreamPath('', '')).toBe('/');
    expect(joinUpstreamPath('', '/')).toBe('/');
  });

  describe('F3 not a forward proxy', () => {
    it('F3: a raw "#" anywhere in the target is refused (/crm/..#x would resolve out of the base path upstream)', () => {
      expect(targetProblem('/crm/..#x')).toBeDefined();
      expect(targetProblem('/%2e%2e#')).toBeDefined();
      expect(targetProblem('/crm/x?q=1#frag')).toBeDefined();
      expect(targetProblem('/crm/x?q=%23')).toBeUndefined();
    });

    it.each(['/a/..;/admin', '/a/..%3b/admin', '/a/.;x/b', '/a/%2e%2e%3Bjsessionid=1/b'])(
      'F3: %s (a dot segment before ;params, which Tomcat, Jetty and Spring drop) is refused',
      (path) => expect(pathProblem(path)).toBeDefined(),
    );

    it.each(['/a/%252e%252e/b', '/a/%252f', '/a/%255c', '/a/%00', '/a/%c0%ae%c0%ae/b', '/a/%C1%9C'])(
      'F3: %s (double-encoded, NUL or overlong UTF-8) is refused',
      (path) => expect(pathProblem(path)).toBeDefined(),
    );

    it.each(['/a/b;v=1', '/a/..b', '/a/b..', '/a/%25/b', '/caf%C3%A9'])(
      'F3: %s is an ordinary path and passes',
      (path) => {
        expect(pathProblem(path)).toBeUndefined();
      },
    );

    it('F3: splitOriginForm refuses absolute-form, authority-form and "*" targets', () => {
      expect(splitOriginForm('http://x/')).toBeUndefined();
      expect(splitOriginForm('https://other.example/a?b')).toBeUndefined();
      expect(splitOriginForm('other.example:443')).toBeUndefined();
      expect(splitOriginForm('*')).toBeUndefined();
      expect(splitOriginForm('')).toBeUndefined();
    });
  });

  describe('§3 configuration', () => {
    it('§3: prefixes match on whole segments: /crm matches /crm and /crm/x, not /crmx', () => {
      expect(matchesPrefix('/crm', '/crm')).toBe(true);
      expect(matchesPrefix('/crm/', '/crm')).toBe(true);
      expect(matchesPrefix('/crm/users', '/crm')).toBe(true);
      expect(matchesPrefix('/crmx', '/crm')).toBe(false);
      expect(matchesPrefix('/crm-old/x', '/crm')).toBe(false);
      expect(matchesPrefix('/cr', '/crm')).toBe(false);
      expect(matchesPrefix('/a/b/c', '/a/b')).toBe(true);
    });
  });
});

describe('S3 paths: look-alikes, overlong UTF-8 and %u escapes', () => {
  it.each([
    ['fullwidth full stops', '/a/%ef%bc%8e%ef%bc%8e/b/x'],
    ['fullwidth full stops, upper case', '/a/%EF%BC%8E%EF%BC%8E/b/x'],
    ['a fullwidth full stop inside a segment', '/a/x%ef%bc%8ey'],
    ['fullwidth solidus', '/a%ef%bc%8fb'],
    ['fullwidth reverse solidus', '/a%ef%bc%bcb'],
    ['one-dot leader', '/a/%e2%80%a4%e2%80%a4/b'],
    ['two-dot leader', '/a/%e2%80%a5/b'],
    ['horizontal ellipsis', '/a/%e2%80%a6'],
    ['small full stop', '/a/%ef%b9%92%ef%b9%92/b'],
    ['care of (c/o)', '/a/%e2%84%85'],
    ['digit one full stop', '/a/%e2%92%88'],
    ['mixed with a plain dot', '/a/.%ef%bc%8e/b'],
  ])('S3: an escape that decodes to a character NFKC turns into ".", "/" or "\\" is refused (%s)', (_label, path) => {
    expect(pathProblem(path)).toMatch(/Unicode normalisation/);
  });

  it.each([
    ['2-byte "."', '/a/%c0%ae%c0%ae/b'],
    ['3-byte "."', '/a/%e0%80%ae%e0%80%ae/b'],
    ['4-byte "."', '/a/%f0%80%80%ae'],
    ['5-byte "."', '/a/%f8%80%80%80%ae'],
    ['6-byte "/"', '/a/%fc%80%80%80%80%af'],
    ['3-byte "/"', '/a%e0%80%afb'],
    ['3-byte "a" (harmless, still overlong)', '/a%e0%81%a1'],
    ['4-byte U+0800', '/a%f0%80%a0%80'],
  ])('S3: an overlong UTF-8 encoding of any length is refused (%s)', (_label, path) => {
    expect(pathProblem(path)).toBeDefined();
  });

  it.each(['/a/%u002e%u002e/b', '/a/%U002E', '/a%u2215b', '/a%uff0e'])(
    'S3: a percent-u escape (%uXXXX) is refused: %s',
    (path) => {
      expect(pathProblem(path)).toBe('%u escapes are not allowed in the path');
    },
  );

  it.each([
    ['raw fullwidth full stops (as Node gives bytes: Latin-1)', '/a/\u00ef\u00bc\u008e\u00ef\u00bc\u008e/b'],
    ['raw overlong', '/a/\u00e0\u0080\u00ae'],
    ['a character above Latin-1 in the string', '/a/\uff0e\uff0e/b'],
  ])('S3: raw non-ASCII bytes that decode to a look-alike or an overlong are refused (%s)', (_label, path) => {
    expect(pathProblem(path)).toBeDefined();
  });

  it.each([
    ['UTF-8 letters', '/users/m%c3%bcller/caf%C3%A9'],
    ['CJK and emoji', '/q/%e6%97%a5%e6%9c%ac/%f0%9f%98%80'],
    ['Latin-1 escapes (not UTF-8)', '/users/M%fcller/%e9t%e9'],
    ['a lone continuation byte', '/a%80b'],
    ['a truncated sequence', '/a%e2%80'],
    ['a lead byte then ASCII', '/a%fcx/%f8y'],
    ['an escaped space and plus', '/a%20b/c+d'],
    ['an escaped dot inside a name', '/a%2eb/file%2Ejson'],
    ['a lone percent sign', '/100%/x%zz'],
    ['fullwidth letters (NFKC to plain letters)', '/%ef%bc%a1%ef%bd%82'],
    ['a word with u after a percent sign', '/discount%u/x'],
    ['a surrogate encoded (CESU-8)', '/a%ed%a0%80'],
  ])('S3: escapes that are harmless pass (%s)', (_label, path) => {
    expect(pathProblem(path)).toBeUndefined();
  });

  it('S3: the messages name no secret and quote nothing the client sent but a code point', () => {
    expect(pathProblem('/a/%ef%bc%8e')).toBe(
      'U+FF0E is not allowed in the path: Unicode normalisation turns it into ".", "/" or "\\"',
    );
    expect(pathProblem('/a/%e0%80%ae')).toBe('overlong UTF-8 encodings are not allowed in the path');
  });
});

describe('§3 route precedence', () => {
  const crm: RoutableAccount = { name: 'crm', isDefault: false, route: { pathPrefix: '/crm' } };
  const crmV2: RoutableAccount = { name: 'crm-v2', isDefault: false, route: { pathPrefix: '/crm/v2' } };
  const fleet: RoutableAccount = { name: 'fleet', isDefault: true, route: { port: 8081 } };
  const other: RoutableAccount = { name: 'other', isDefault: false, route: {} };
  const router = new Router([crm, crmV2, fleet, other]);
  it("§3: the listener's own account wins over the header and the prefix", () => {
    expect(router.route(fakeRequest({ 'x-sidecar-account': 'crm' }), '/crm/x', fleet)).toEqual({
      account: fleet,
      rest: '/crm/x',
    });
  });

  it('§3: X-Sidecar-Account wins over the path prefix, and the path is not stripped', () => {
    expect(router.route(fakeRequest({ 'x-sidecar-account': 'other' }), '/crm/x', undefined)).toEqual({
      account: other,
      rest: '/crm/x',
    });
  });

  it('§3: an unknown X-Sidecar-Account is an error, not a fall-through to the prefix or default', () => {
    const result = router.route(fakeRequest({ 'x-sidecar-account': 'nobody' }), '/crm/x', undefined);
    expect('error' in result).toBe(true);
  });

  it('§3: the longest matching prefix wins and is stripped', () => {
    expect(router.route(fakeRequest(), '/crm/v2/users', undefined)).toEqual({ account: crmV2, rest: '/users' });
    expect(router.route(fakeRequest(), '/crm/v1/users', undefined)).toEqual({ account: crm, rest: '/v1/users' });
    expect(router.route(fakeRequest(), '/crm', undefined)).toEqual({ account: crm, rest: '' });
    expect(router.route(fakeRequest(), '/crm/', undefined)).toEqual({ account: crm, rest: '/' });
  });

  it('§3: prefixes match whole segments: /crmx goes to the default account, unstripped', () => {
    expect(router.route(fakeRequest(), '/crmx/users', undefined)).toEqual({ account: fleet, rest: '/crmx/users' });
    expect(router.route(fakeRequest(), '/crm/v2x', undefined)).toEqual({ account: crm, rest: '/v2x' });
  });

  it('§3: with no listener, header or prefix match, the default account takes the request', () => {
    expect(router.route(fakeRequest(), '/anything', undefined)).toEqual({ account: fleet, rest: '/anything' });
  });

  describe('F5 errors the sidecar produces', () => {
    it('F5: with no default account, an unmatched path is an error (404 no_route)', () => {
      const noDefault = new Router([crm, other]);
      const result = noDefault.route(fakeRequest(), '/elsewhere', undefined);
      expect('error' in result).toBe(true);
    });
  });
});

describe('§8 inbound policy', () => {
  function loopbackList(): BlockList {
    const list = new BlockList();
    list.addSubnet('127.0.0.0', 8, 'ipv4');
    list.addSubnet('::1', 128, 'ipv6');
    return list;
  }
  it('§8: 127.0.0.1 and ::ffff:127.0.0.1 are allowed by 127.0.0.0/8', () => {
    const policy = new InboundPolicy(loopbackList(), []);
    expect(policy.check(fakeRequest({}, '127.0.0.1'))).toBeUndefined();
    expect(policy.check(fakeRequest({}, '127.10.20.30'))).toBeUndefined();
    expect(policy.check(fakeRequest({}, '::ffff:127.0.0.1'))).toBeUndefined();
  });

  it('§8: an address outside inbound.allow (10.0.0.1, ::ffff:10.0.0.1, ::2) is refused', () => {
    const policy = new InboundPolicy(loopbackList(), []);
    expect(policy.check(fakeRequest({}, '10.0.0.1'))).toBeDefined();
    expect(policy.check(fakeRequest({}, '::ffff:10.0.0.1'))).toBeDefined();
    expect(policy.check(fakeRequest({}, '::2'))).toBeDefined();
  });

  it('§8: ::1 is allowed by ::1/128', () => {
    expect(new InboundPolicy(loopbackList(), []).check(fakeRequest({}, '::1'))).toBeUndefined();
  });

  it('§8: with API keys set, a missing or wrong X-Sidecar-Key is refused', () => {
    const key = randomBytes(24).toString('hex');
    const policy = new InboundPolicy(loopbackList(), [new Secret(key)]);
    expect(policy.check(fakeRequest({}))).toBeDefined();
    expect(policy.check(fakeRequest({ 'x-sidecar-key': `${key}x` }))).toBeDefined();
    expect(policy.check(fakeRequest({ 'x-sidecar-key': key.slice(1) }))).toBeDefined();
    expect(policy.check(fakeRequest({ 'x-sidecar-key': '' }))).toBeDefined();
  });

  it('§8: with API keys set, the right X-Sidecar-Key is accepted', () => {
    const key = randomBytes(24).toString('hex');
    expect(
      new InboundPolicy(loopbackList(), [new Secret(key)]).check(fakeRequest({ 'x-sidecar-key': key })),
    ).toBeUndefined();
  });

  it('§8: any one of several keys is accepted', () => {
    const keys = [0, 1, 2].map(() => randomBytes(24).toString('hex'));
    const policy = new InboundPolicy(
      loopbackList(),
      keys.map((key) => new Secret(key)),
    );
    for (const key of keys) expect(policy.check(fakeRequest({ 'x-sidecar-key': key }))).toBeUndefined();
    expect(policy.check(fakeRequest({ 'x-sidecar-key': randomBytes(24).toString('hex') }))).toBeDefined();
  });

  it('§8: a right key from a refused address is still refused', () => {
    const key = randomBytes(24).toString('hex');
    expect(
      new InboundPolicy(loopbackList(), [new Secret(key)]).check(fakeRequest({ 'x-sidecar-key': key }, '10.0.0.1')),
    ).toBeDefined();
  });

  describe('F6 no secret in any output', () => {
    it('F6: the refusal reason never contains the key that was sent or the configured key', () => {
      const key = randomBytes(24).toString('hex');
      const sent = randomBytes(24).toString('hex');
      const reason = new InboundPolicy(loopbackList(), [new Secret(key)]).check(fakeRequest({ 'x-sidecar-key': sent }));
      expect(reason).toBeDefined();
      expect(reason).not.toContain(key);
      expect(reason).not.toContain(sent);
    });
  });
});

describe('F1 request and response headers', () => {
  const token = new ActiveToken(new Secret('t'), 1, 0, 1e12, 1000);
  const upstream = new URL('https://api.crm.example:8443/v2');

  it("F1: the client's Authorization is replaced with Bearer <token>", () => {
    const headers = upstreamRequestHeaders(
      fakeRequest({ authorization: 'Basic Y2xpZW50OnNlY3JldA==', host: 'localhost:8080' }),
      upstream,
      token,
    );
    expect(headers.authorization).toBe('Bearer t');
  });

  it('F1: X-Sidecar-Account, X-Sidecar-Key and hop-by-hop headers are removed', () => {
    const headers = upstreamRequestHeaders(
      fakeRequest({
        host: 'localhost:8080',
        'x-sidecar-account': 'crm',
        'x-sidecar-key': 'k',
        connection: 'keep-alive',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        upgrade: 'h2c',
        'proxy-authorization': 'Basic eDp5',
        'proxy-connection': 'keep-alive',
        trailer: 'x-checksum',
        accept: 'application/json',
        'x-request-id': 'abc',
      }),
      upstream,
      token,
    );
    for (const name of [
      'x-sidecar-account',
      'x-sidecar-key',
      'connection',
      'keep-alive',
      'te',
      'upgrade',
      'proxy-authorization',
      'proxy-connection',
      'trailer',
    ]) {
      expect(headers, name).not.toHaveProperty(name);
    }
    expect(headers.accept).toBe('application/json');
    expect(headers['x-request-id']).toBe('abc');
  });

  it('F1: headers named in Connection are hop-by-hop and removed', () => {
    const headers = upstreamRequestHeaders(
      fakeRequest({
        host: 'localhost:8080',
        connection: 'X-Custom, close',
        'x-custom': 'drop me',
        'x-kept': 'keep me',
      }),
      upstream,
      token,
    );
    expect(headers).not.toHaveProperty('x-custom');
    expect(headers['x-kept']).toBe('keep me');
  });

  it("F1: Host is the upstream's host (with its port), X-Forwarded-Host the original Host", () => {
    const headers = upstreamRequestHeaders(fakeRequest({ host: 'localhost:8080' }), upstream, token);
    expect(headers.host).toBe('api.crm.example:8443');
    expect(headers['x-forwarded-host']).toBe('localhost:8080');
    expect(upstreamRequestHeaders(fakeRequest({ host: 'x' }), new URL('https://api.example/v1'), token).host).toBe(
      'api.example',
    );
  });

  it('F1: X-Forwarded-For is the client address', () => {
    expect(upstreamRequestHeaders(fakeRequest({ host: 'h' }, '127.0.0.1'), upstream, token)['x-forwarded-for']).toBe(
      '127.0.0.1',
    );
  });

  it('F1: X-Forwarded-Proto is http (the data plane speaks plain HTTP)', () => {
    expect(
      upstreamRequestHeaders(fakeRequest({ host: 'h', 'x-forwarded-proto': 'https' }), upstream, token)[
        'x-forwarded-proto'
      ],
    ).toBe('http');
  });

  it('F1: end-to-end headers (content-type, content-length, cookie) pass through unchanged', () => {
    const headers = upstreamRequestHeaders(
      fakeRequest({ host: 'h', 'content-type': 'application/json', 'content-length': '12', cookie: 'a=b' }),
      upstream,
      token,
    );
    expect(headers).toMatchObject({ 'content-type': 'application/json', 'content-length': '12', cookie: 'a=b' });
  });

  it('F1: hop-by-hop response headers (and those named in Connection) are removed; others pass through', () => {
    const headers = clientResponseHeaders({
      connection: 'keep-alive, x-upstream-hop',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      upgrade: 'h2c',
      'proxy-authenticate': 'Basic',
      trailer: 'x-checksum',
      'x-upstream-hop': '1',
      'content-type': 'text/plain',
      'set-cookie': ['a=1', 'b=2'],
      'www-authenticate': 'Bearer error="invalid_token"',
    });
    expect(Object.keys(headers).sort()).toEqual(['content-type', 'set-cookie', 'www-authenticate']);
    expect(headers['set-cookie']).toEqual(['a=1', 'b=2']);
  });
});

describe('R1/R3: what the data plane writes', () => {
  const upstream = new URL('https://api.crm.example/v2');

  // Each carries the marker Zq9 (but the empty one), so the test can tell it is never quoted.
  it.each(['Zq9-1\n', 'Zq9\r\nX-Injected: evil', ' Zq9', 'Zq9 ', 'Zq 9', 'Zq9\u0000', 'Zq9ö', ''])(
    'R1: upstreamRequestHeaders never writes the token %j: it throws TokenNotHeaderSafeError saying why, never quoting it',
    (value) => {
      const token = new ActiveToken(new Secret(value), 1, 0, 1e12, 1000);
      const attempt = () => upstreamRequestHeaders(fakeRequest({ host: 'h' }), upstream, token);
      expect(attempt).toThrow(TokenNotHeaderSafeError);
      expect(attempt).toThrow(/^token not header-safe \(/);
      expect(attempt).not.toThrow(/Zq/);
      // The WebSocket upgrade's headers come from the same writer.
      expect(() =>
        upstreamRequestHeaders(fakeRequest({ host: 'h', upgrade: 'websocket' }), upstream, token, {
          keepUpgrade: true,
        }),
      ).toThrow(TokenNotHeaderSafeError);
    },
  );

  it('R1: the first refusal of a token is marked for the log, later ones are not (one line per token)', () => {
    const token = new ActiveToken(new Secret('tok\n'), 1, 0, 1e12, 1000);
    const firstReports = [0, 1, 2].map(() => {
      try {
        upstreamRequestHeaders(fakeRequest({ host: 'h' }), upstream, token);
        return undefined;
      } catch (error) {
        return (error as TokenNotHeaderSafeError).firstReport;
      }
    });
    expect(firstReports).toEqual([true, false, false]);
  });

  it('R3: a UTF-8 reason phrase is given back as its bytes (latin1 characters, which Node writes one byte each)', () => {
    // undici decodes the phrase as UTF-8: "Très bien" arrives as U+00E8 and leaves as C3 A8.
    expect(clientReasonPhrase('Très bien')).toBe('Tr\xc3\xa8s bien');
    expect(clientReasonPhrase('Not Modified')).toBe('Not Modified');
    expect(clientReasonPhrase(undefined)).toBeUndefined();
  });

  it("R3: a reason phrase that was not UTF-8 (its bytes lost), or that Node cannot write, gives Node's standard phrase", () => {
    expect(clientReasonPhrase('caf\ufffd')).toBeUndefined();
    expect(clientReasonPhrase('OK\r\nX-Injected: 1')).toBeUndefined();
    expect(clientReasonPhrase('OK\u0000')).toBeUndefined();
  });

  it('R3: answers to HEAD, 204 and 304 have no body, whatever their Content-Length says', () => {
    expect(answerHasNoBody('HEAD', 200)).toBe(true);
    expect(answerHasNoBody('GET', 204)).toBe(true);
    expect(answerHasNoBody('GET', 304)).toBe(true);
    expect(answerHasNoBody('GET', 200)).toBe(false);
    expect(answerHasNoBody('POST', 401)).toBe(false);
  });
});

describe('F5 sidecar errors', () => {
  it('F5: SIDECAR_ERRORS maps exactly the contract codes to their statuses', () => {
    const table = Object.fromEntries(Object.entries(SIDECAR_ERRORS).map(([code, entry]) => [code, entry.status]));
    expect(table).toEqual({
      bad_request: 400,
      unauthorized: 401,
      forbidden: 403,
      no_route: 404,
      method_not_allowed: 405,
      upstream_unreachable: 502,
      token_unavailable: 503,
      upstream_busy: 503,
      upstream_timeout: 504,
    });
  });

  it('F5: an error body is JSON {error, message, account?}', () => {
    expect(JSON.parse(errorBody('no_route', 'no account matches'))).toEqual({
      error: 'no_route',
      message: 'no account matches',
    });
    expect(JSON.parse(errorBody('token_unavailable', 'no token yet', 'crm'))).toEqual({
      error: 'token_unavailable',
      message: 'no token yet',
      account: 'crm',
    });
  });
});

describe('S2 forwarding headers', () => {
  const token = new ActiveToken(new Secret('t'), 1, 0, 1e12, 1000);
  const upstream = new URL('https://api.crm.example:8443/v2');
  const claimed = {
    host: 'localhost:8080',
    forwarded: 'for=6.6.6.6;host=evil.example;proto=https',
    'x-real-ip': '6.6.6.6',
    'x-forwarded-for': '6.6.6.6',
    'x-forwarded-port': '443',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'evil.example',
    'x-forwarded-prefix': '/admin',
    'x-request-id': 'kept',
    'x-client-ip': '6.6.6.6',
    'true-client-ip': '6.6.6.6',
    'cf-connecting-ip': '6.6.6.6',
    'x-cluster-client-ip': '6.6.6.6',
    'fastly-client-ip': '6.6.6.6',
    'x-original-forwarded-for': '6.6.6.6',
  };
  const clientIpHeaders = [
    'x-client-ip',
    'true-client-ip',
    'cf-connecting-ip',
    'x-cluster-client-ip',
    'fastly-client-ip',
    'x-original-forwarded-for',
  ];
  const proxies = new BlockList();
  proxies.addSubnet('10.0.0.0', 8, 'ipv4');
  const trustedProxies = new TrustedProxies(proxies);

  it("S2: a client's Forwarded, X-Real-IP and every X-Forwarded-* are dropped; the sidecar sets its own", () => {
    const headers = upstreamRequestHeaders(fakeRequest(claimed, '192.168.1.5'), upstream, token, { trustedProxies });
    expect(headers).not.toHaveProperty('forwarded');
    expect(headers).not.toHaveProperty('x-real-ip');
    expect(headers).not.toHaveProperty('x-forwarded-port');
    expect(headers).not.toHaveProperty('x-forwarded-prefix');
    expect(headers['x-forwarded-for']).toBe('192.168.1.5');
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-host']).toBe('localhost:8080');
    expect(headers['x-request-id']).toBe('kept');
  });

  it("S2: a client's other client-address headers (X-Client-IP, True-Client-IP, CF-Connecting-IP, X-Cluster-Client-IP, Fastly-Client-IP, X-Original-Forwarded-For) are dropped too", () => {
    const headers = upstreamRequestHeaders(fakeRequest(claimed, '192.168.1.5'), upstream, token, { trustedProxies });
    for (const name of clientIpHeaders) expect(headers, name).not.toHaveProperty(name);
    const fromProxy = upstreamRequestHeaders(fakeRequest(claimed, '10.1.2.3'), upstream, token, { trustedProxies });
    for (const name of clientIpHeaders) expect(fromProxy[name], name).toBe('6.6.6.6');
  });

  it("S2: a trusted proxy's Forwarded gets the sidecar's hop appended (for=, an IPv6 address quoted in brackets), as X-Forwarded-For does", () => {
    const ipv6Proxies = new BlockList();
    ipv6Proxies.addSubnet('fd00::', 8, 'ipv6');
    const trusted = new TrustedProxies(ipv6Proxies);
    const headers = upstreamRequestHeaders(fakeRequest(claimed, 'fd00::7'), upstream, token, {
      trustedProxies: trusted,
    });
    expect(headers.forwarded).toBe(`${claimed.forwarded}, for="[fd00::7]"`);
    expect(headers['x-forwarded-for']).toBe('6.6.6.6, fd00::7');
    const noForwarded = upstreamRequestHeaders(fakeRequest({ host: 'h' }, '10.1.2.3'), upstream, token, {
      trustedProxies,
    });
    expect(noForwarded).not.toHaveProperty('forwarded');
  });

  it('S2: from a trusted proxy (an IPv4-mapped address too) they are kept and X-Forwarded-For is appended to', () => {
    for (const address of ['10.1.2.3', '::ffff:10.1.2.3']) {
      const headers = upstreamRequestHeaders(fakeRequest(claimed, address), upstream, token, { trustedProxies });
      expect(headers.forwarded).toBe(`${claimed.forwarded}, for=${address.includes(':') ? `"[${address}]"` : address}`);
      expect(headers['x-real-ip']).toBe('6.6.6.6');
      expect(headers['x-forwarded-port']).toBe('443');
      expect(headers['x-forwarded-for']).toBe(`6.6.6.6, ${address}`);
      expect(headers['x-forwarded-proto']).toBe('https');
      expect(headers['x-forwarded-host']).toBe('evil.example');
    }
  });

  it("S2: a trusted proxy that sends no forwarding headers gets the sidecar's own", () => {
    const headers = upstreamRequestHeaders(fakeRequest({ host: 'h' }, '10.1.2.3'), upstream, token, { trustedProxies });
    expect(headers['x-forwarded-for']).toBe('10.1.2.3');
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-host']).toBe('h');
  });

  it('S2: with no trusted proxies configured nobody is trusted, not even loopback', () => {
    const headers = upstreamRequestHeaders(fakeRequest(claimed, '127.0.0.1'), upstream, token);
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers).not.toHaveProperty('forwarded');
  });
});
