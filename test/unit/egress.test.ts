import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { EnvHttpProxyAgent } from 'undici';
import { describe, expect, it } from 'vitest';
import { NoProxyRule, proxyFor, resolveEgress, type EgressPolicy } from '../../src/config/egress.js';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigProblem } from '../../src/config/resolve.js';
import { TokenInjector, withQueryParameter } from '../../src/proxy/bearer.js';
import { sendTokenRequest } from '../../src/flows/http-client.js';
import { TokenEgress } from '../../src/flows/proxy-agent.js';
import { ActiveToken } from '../../src/tokens/active-token.js';
import { Secret } from '../../src/util/secret.js';

const symbols = createRequire(import.meta.url)('undici/lib/core/symbols.js') as Record<string, symbol>;

/** Which of its three agents undici's EnvHttpProxyAgent picks for `target` under `noProxy`. */
function undiciChoice(noProxy: string, target: string): 'direct' | 'http' | 'https' {
  const agent = new EnvHttpProxyAgent({ httpProxy: 'http://h.proxy:1', httpsProxy: 'http://s.proxy:2', noProxy });
  let picked: 'direct' | 'http' | 'https' | undefined;
  const fake = (name: 'direct' | 'http' | 'https') => ({ dispatch: () => ((picked = name), true) });
  const slots = agent as unknown as Record<symbol, unknown>;
  slots[symbols.kNoProxyAgent as symbol] = fake('direct');
  slots[symbols.kHttpProxyAgent as symbol] = fake('http');
  slots[symbols.kHttpsProxyAgent as symbol] = fake('https');
  agent.dispatch({ origin: target, path: '/', method: 'GET' }, { onError: () => undefined } as never);
  return picked as 'direct' | 'http' | 'https';
}

function ourChoice(noProxy: string, target: string): 'direct' | 'http' | 'https' {
  const problems: ConfigProblem[] = [];
  const policy = resolveEgress(
    {},
    { HTTP_PROXY: 'http://h.proxy:1', HTTPS_PROXY: 'http://s.proxy:2', NO_PROXY: noProxy },
    'accounts.a',
    problems,
  );
  expect(problems).toEqual([]);
  const proxy = proxyFor(policy, new URL(target));
  return proxy === undefined ? 'direct' : proxy.source === 'HTTPS_PROXY' ? 'https' : 'http';
}

describe('E6 egress proxy choice', () => {
  it('E6: NO_PROXY is read exactly as undici EnvHttpProxyAgent reads it', () => {
    const rules = [
      '',
      '*',
      'example.org',
      '.example.org',
      '*.example.org',
      'example.org:8443',
      '127.0.0.1',
      '127.0.0.1:9000',
      'localhost, [::1]',
      'a.example  b.example',
      'EXAMPLE.ORG',
    ];
    const targets = [
      'http://example.org',
      'https://example.org',
      'https://api.example.org:8443',
      'http://notexample.org',
      'http://127.0.0.1:9000',
      'http://127.0.0.1:9001',
      'http://localhost:8080',
      'http://[::1]:80',
      'https://b.example',
      'https://Example.org',
    ];
    for (const rule of rules) {
      for (const target of targets)
        expect(ourChoice(rule, target), `${rule} / ${target}`).toBe(undiciChoice(rule, target));
    }
    expect(new NoProxyRule('').excludes(new URL('http://localhost'))).toBe(false);
  });

  it('E6: accounts.NAME.proxy wins over the environment, null is direct, credentials never show', () => {
    const problems: ConfigProblem[] = [];
    const env = { HTTPS_PROXY: 'http://env.proxy:3128' };
    const own = resolveEgress({ proxy: 'http://user:p%40ss@own.proxy:8080' }, env, 'accounts.a', problems);
    const none = resolveEgress({ proxy: null }, env, 'accounts.b', problems);
    expect(problems).toEqual([]);
    const chosen = proxyFor(own, new URL('https://api.example'));
    expect(chosen?.url.href).toBe('http://own.proxy:8080/');
    expect(chosen?.authorization?.reveal()).toBe(`Basic ${Buffer.from('user:p@ss').toString('base64')}`);
    expect(JSON.stringify(own)).not.toContain('p@ss');
    expect(proxyFor(none, new URL('https://api.example'))).toBeUndefined();
    const lower: EgressPolicy = resolveEgress(
      {},
      { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:2' },
      'accounts.c',
      problems,
    );
    expect(proxyFor(lower, new URL('https://api.example'))?.url.host).toBe('lower:1');
  });

  it('E6: a token request the proxy answers 407 fails as proxy_refused, naming the proxy and not its credentials', async () => {
    const proxy = createServer((_req, res) => res.writeHead(407, { 'proxy-authenticate': 'Basic' }).end());
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const problems: ConfigProblem[] = [];
    const policy = resolveEgress({ proxy: url.replace('//', '//user:hidden-pw@') }, {}, 'accounts.a', problems);
    const egress = new TokenEgress(policy, { tls: { rejectUnauthorized: true }, connectTimeoutMs: 1_000 });
    try {
      const request = { url: new URL('http://idp.example/token'), headers: {}, body: 'grant_type=x', secrets: [] };
      const failure = await sendTokenRequest(request, { timeoutMs: 5_000, egress }).catch((error: unknown) => error);
      expect(failure).toMatchObject({ transportCode: 'proxy_refused' });
      expect((failure as Error).message).toBe(
        `via proxy ${url}: the proxy answered 407 (proxy credentials missing or refused)`,
      );
    } finally {
      await egress.close();
      proxy.close();
    }
  });

  it('E6: a proxy URL that is not http(s), or a proxyAuthFile without a colon, is a configuration problem that does not quote it', () => {
    const problems: ConfigProblem[] = [];
    resolveEgress({}, { HTTPS_PROXY: 'socks5://user:hidden@s:1' }, 'accounts.a', problems);
    expect(problems.map((problem) => problem.path)).toEqual(['HTTPS_PROXY']);
    expect(JSON.stringify(problems)).not.toContain('hidden');
  });

  it('E6: a bad percent-escape in the proxy URL credentials is a configuration problem, not a crash, and is not quoted', () => {
    const problems: ConfigProblem[] = [];
    expect(() =>
      resolveEgress({}, { HTTPS_PROXY: 'http://us%zz:hidden%@proxy:3128' }, 'accounts.a', problems),
    ).not.toThrow();
    expect(problems).toEqual([
      { path: 'HTTPS_PROXY', message: 'the user or password in the proxy URL has a bad percent-escape (%XX)' },
    ]);
    expect(JSON.stringify(problems)).not.toContain('hidden');
  });
});

const token = (value: string) => new ActiveToken(new Secret(value), 1, 0, 60_000, 60_000);

describe('E5 where the token goes', () => {
  it('E5: the format is filled in once per token; a token that is not header-safe is refused (R1)', () => {
    const inject = new TokenInjector({ header: 'x-api-token', format: '{type}:{token} ({type})' });
    const headers: Record<string, string | string[]> = { 'x-api-token': 'client' };
    inject.writeHeader(headers, token('abc'));
    expect(headers['x-api-token']).toBe('Bearer:abc (Bearer)');
    expect(() => inject.valueFor(token('a b'))).toThrow(/header-safe/);
  });

  it("E5: the query parameter replaces the client's own (as sent or percent-decoded); others keep their bytes and order", () => {
    expect(withQueryParameter('/p', 'access_token', 'T')).toBe('/p?access_token=T');
    expect(withQueryParameter('/p?', 'access_token', 'T')).toBe('/p?access_token=T');
    expect(
      withQueryParameter('/p?x=%2F&access_token=1&y&access%5Ftoken=2&access_token&z=a+b', 'access_token', 'T'),
    ).toBe('/p?x=%2F&y&z=a+b&access_token=T');
    expect(withQueryParameter('/p?%zz=1&access_tokens=2', 'access_token', 'T')).toBe(
      '/p?%zz=1&access_tokens=2&access_token=T',
    );
    const inject = new TokenInjector({ query: 'access_token' });
    expect(inject.targetWithToken('/p?a=1', token('a/b+c='))).toBe('/p?a=1&access_token=a%2Fb%2Bc%3D');
  });

  it("E5: the client's own parameter is dropped whatever its case, and after a ';' inside a parameter", () => {
    expect(
      withQueryParameter(
        '/p?a=1;access_token=EVIL&ACCESS_TOKEN=EVIL&b=2;Access%5FToken=EVIL;c=3&d;e',
        'access_token',
        'T',
      ),
    ).toBe('/p?a=1&b=2;c=3&d;e&access_token=T');
    expect(withQueryParameter('/p?access_token=EVIL;a=1', 'access_token', 'T')).toBe('/p?a=1&access_token=T');
  });

  it('E5: in query placement, no header of the answer carries the token: its parameter is cut from Location and Content-Location, other headers holding it are dropped', () => {
    const inject = new TokenInjector({ query: 'access_token' });
    const secret = token('tok/en+1');
    const encoded = 'tok%2Fen%2B1';
    const headers: Record<string, string | string[] | undefined> = {
      location: `https://api.example/v2/users/?page=2&access_token=${encoded}`,
      'content-location': `/v2/users?ACCESS_TOKEN=${encoded};x=1`,
      'x-debug': `upstream saw tok/en+1`,
      'set-cookie': ['a=1', `t=${encoded}`],
      'x-other': 'fine',
    };
    inject.scrubAnswerHeaders(headers, secret);
    expect(headers).toEqual({
      location: 'https://api.example/v2/users/?page=2',
      'content-location': '/v2/users?x=1',
      'set-cookie': ['a=1'],
      'x-other': 'fine',
    });
    // Re-encoded with lower-case hex, or an older token: cut by the parameter's name all the same.
    const reencoded: Record<string, string | string[] | undefined> = {
      location: '/v2/x?a=1&access_token=tok%2fen%2b1',
      'content-location': '/v2/x?access_token=an-older-token&b=2',
      link: '</v2/x?access_token=tok%2fen%2b1>; rel="next"',
    };
    inject.scrubAnswerHeaders(reencoded, secret);
    expect(reencoded).toEqual({ location: '/v2/x?a=1', 'content-location': '/v2/x?b=2' });
    const header = new TokenInjector({ header: 'authorization', format: '{type} {token}' });
    const untouched = { location: '/x?access_token=tok/en+1' };
    header.scrubAnswerHeaders(untouched, secret);
    expect(untouched).toEqual({ location: '/x?access_token=tok/en+1' });
  });

  it('E5: inject settings are checked: a reserved header, a format without {token}, query with header', () => {
    const base = {
      upstream: 'http://u',
      auth: { flow: 'session', loginUrl: 'http://l', username: 'u', password: 'p' },
    };
    const problemsFor = (inject: Record<string, unknown>) => {
      try {
        parseConfig({ accounts: { a: { ...base, inject } } }, { env: {} });
        return [];
      } catch (error) {
        return (error as { problems: ConfigProblem[] }).problems.map((problem) => problem.path);
      }
    };
    expect(problemsFor({ header: 'Host' })).toEqual(['accounts.a.inject.header']);
    expect(problemsFor({ header: 'X-Forwarded-For' })).toEqual(['accounts.a.inject.header']);
    expect(problemsFor({ format: 'Token' })).toEqual(['accounts.a.inject.format']);
    expect(problemsFor({ format: 'Token {token}\r\n' })).toEqual(['accounts.a.inject.format']);
    expect(problemsFor({ query: 'access_token', header: 'X-Token' })).toEqual(['accounts.a.inject']);
    expect(problemsFor({ header: 'X-Token', format: 'Token {token}' })).toEqual([]);
  });
});
