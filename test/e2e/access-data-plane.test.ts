import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import { useHarness, type LaunchedCli } from '../helpers/harness.js';
import { rawExchange, rawHead } from '../helpers/raw-upstream.js';
import { startHeaderRecordingUpstream, type HeaderRecordingUpstream } from '../helpers/ws-upstream.js';

/*
 * Issue 19 through the real CLI: who may use the data plane (S1), paths that only a normalising
 * upstream would read as a way out (S3), and --host in quick mode (S5). Each refusal is checked
 * on both sides: the client's answer, and an upstream and a token server that saw nothing of it.
 */

const harness = useHarness();

interface Scene {
  running: LaunchedCli;
  upstream: HeaderRecordingUpstream;
  tokenServer: SessionTokenServer;
  /** The data plane's port, for `Host: 127.0.0.1:PORT`. */
  port: string;
}

/** The CLI with accounts `a` and `b` (path prefixes /a and /b) in front of one recording upstream, after its first login. */
async function startScene(inbound: Record<string, unknown> = {}): Promise<Scene> {
  const { tokenServer, password } = await harness.sessionTokenServer();
  const upstream = await startHeaderRecordingUpstream();
  harness.defer(() => upstream.close());
  const auth = {
    flow: 'session',
    loginUrl: tokenServer.loginUrl,
    refreshUrl: tokenServer.refreshUrl,
    username: 'u',
    password: '${PW}',
  };
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    inbound,
    accounts: {
      a: { upstream: `${upstream.url}/base-a`, route: { pathPrefix: '/a' }, auth },
      b: { upstream: `${upstream.url}/base-b`, route: { pathPrefix: '/b' }, auth },
    },
  };
  const dir = harness.tempDir('bs-access-');
  writeFileSync(join(dir, 'sidecar.json'), JSON.stringify(config));
  const running = await harness.launchCli(['--config', join(dir, 'sidecar.json')], { env: { PW: password } });
  await waitForLogins(running, 2);
  return { running, upstream, tokenServer, port: new URL(running.data).port };
}

async function waitForLogins(running: LaunchedCli, count: number): Promise<void> {
  let seen = 0;
  await running.cli.waitForLog((entry) => entry.msg === 'token request: login succeeded' && ++seen === count);
}

/** One raw HTTP/1.1 request (connection: close) with exactly these header lines. */
function request(method: string, target: string, headers: Record<string, string>, body = ''): string {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  const length = body === '' ? '' : `content-length: ${Buffer.byteLength(body)}\r\n`;
  return `${method} ${target} HTTP/1.1\r\n${lines.join('')}${length}connection: close\r\n\r\n${body}`;
}

function upgrade(target: string, headers: Record<string, string>): string {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return (
    `GET ${target} HTTP/1.1\r\n${lines.join('')}connection: upgrade\r\nupgrade: websocket\r\n` +
    `sec-websocket-version: 13\r\nsec-websocket-key: ${randomBytes(16).toString('base64')}\r\n\r\n`
  );
}

function status(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
}

function errorOf(raw: string): { error: string; message: string } {
  return JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: string; message: string };
}

/** The input 1: a form POST a web page on another site makes the browser send. */
const CROSS_SITE_FORM = {
  origin: 'https://attacker.example',
  'sec-fetch-site': 'cross-site',
  'content-type': 'application/x-www-form-urlencoded',
};

describe('S1 browsers are not clients (through the CLI)', () => {
  it('S1: a cross-site form POST (Origin attacker.example, Sec-Fetch-Site cross-site) gets 403 forbidden naming inbound.origins; the upstream never sees it and no token request is caused', async () => {
    const { running, upstream, tokenServer, port } = await startScene();
    const tokenRequests = tokenServer.stats.requests;
    const raw = await rawExchange(
      running.data,
      request('POST', '/a/transfer', { host: `127.0.0.1:${port}`, ...CROSS_SITE_FORM }, 'to=attacker&amount=1000'),
    );
    expect(status(raw)).toBe(403);
    const body = errorOf(raw);
    expect(body.error).toBe('forbidden');
    expect(body.message).toContain('inbound.origins');
    expect(body.message).toContain('https://attacker.example');
    // Sec-Fetch-Site alone (a browser that sends no Origin on a same-site GET) is refused too.
    const sameSite = await rawExchange(
      running.data,
      request('GET', '/a/x', { host: 'localhost:8080', 'sec-fetch-site': 'same-site' }),
    );
    expect(status(sameSite)).toBe(403);
    expect(upstream.received).toEqual([]);
    expect(tokenServer.stats.requests).toBe(tokenRequests);
  });

  it('S1: Host attacker.example (DNS rebinding) gets 403 forbidden naming inbound.hosts and --host, for a request and for a WebSocket upgrade; nothing reaches the upstream', async () => {
    const { running, upstream, tokenServer } = await startScene();
    const tokenRequests = tokenServer.stats.requests;
    for (const host of ['attacker.example', 'attacker.example:8080', 'localhost.attacker.example']) {
      const raw = await rawExchange(running.data, request('GET', '/a/accounts', { host }));
      expect(status(raw)).toBe(403);
      expect(errorOf(raw).message).toContain('inbound.hosts (or --host in quick mode)');
    }
    const ws = await rawExchange(running.data, upgrade('/a/room', { host: 'attacker.example' }));
    expect(status(ws)).toBe(403);
    expect(errorOf(ws).error).toBe('forbidden');
    const wsFromPage = await rawExchange(
      running.data,
      upgrade('/a/room', { host: 'localhost:8080', origin: 'https://attacker.example' }),
    );
    expect(status(wsFromPage)).toBe(403);
    expect(errorOf(wsFromPage).message).toContain('inbound.origins');
    expect(upstream.received).toEqual([]);
    expect(tokenServer.stats.requests).toBe(tokenRequests);
  });

  it('S1: Host localhost:8080, 127.0.0.1:PORT, [::1] and no Origin pass, for requests and WebSocket upgrades', async () => {
    const { running, upstream, port } = await startScene();
    for (const host of ['localhost:8080', `127.0.0.1:${port}`, '[::1]:8080', 'api.localhost'])
      expect(status(await rawExchange(running.data, request('GET', '/a/x', { host })))).toBe(200);
    expect(
      status(await rawExchange(running.data, request('GET', '/b/x', { 'sec-fetch-site': 'none', host: 'localhost' }))),
    ).toBe(200);
    expect(status(await rawHead(running.data, upgrade('/a/room', { host: `127.0.0.1:${port}` })))).toBe(101);
    expect(upstream.received.map((seen) => seen.kind)).toEqual(['http', 'http', 'http', 'http', 'http', 'upgrade']);
    // The token is added to what passes (the account's token, never the client's).
    expect(upstream.received.every((seen) => seen.headers.authorization?.startsWith('Bearer ') === true)).toBe(true);
  });

  it('S1: a name in inbound.hosts passes; an origin in inbound.origins passes with Sec-Fetch-Site cross-site, request and upgrade; other origins still get 403', async () => {
    const { running, upstream } = await startScene({
      hosts: ['bearer-sidecar.tools.svc'],
      origins: ['https://app.example'],
    });
    expect(
      status(await rawExchange(running.data, request('GET', '/a/x', { host: 'bearer-sidecar.tools.svc:8080' }))),
    ).toBe(200);
    const fromApp = { host: 'localhost:8080', origin: 'https://app.example', 'sec-fetch-site': 'cross-site' };
    expect(
      status(
        await rawExchange(
          running.data,
          request('POST', '/a/transfer', { ...fromApp, 'content-type': 'application/x-www-form-urlencoded' }, 'a=1'),
        ),
      ),
    ).toBe(200);
    expect(status(await rawHead(running.data, upgrade('/a/room', fromApp)))).toBe(101);
    const other = await rawExchange(
      running.data,
      request('POST', '/a/transfer', { host: 'localhost', ...CROSS_SITE_FORM }, 'a=1'),
    );
    expect(status(other)).toBe(403);
    expect(status(await rawExchange(running.data, request('GET', '/a/x', { host: 'tools.svc' })))).toBe(403);
    expect(upstream.received.map((seen) => seen.kind)).toEqual(['http', 'http', 'upgrade']);
  });

  it('S1: a bad inbound.hosts or inbound.origins entry is a configuration problem naming its path and how to write it: exit 2', async () => {
    const dir = harness.tempDir('bs-access-bad-');
    const config = {
      inbound: { hosts: ['http://sidecar.example:8080'], origins: ['https://app.example/path'] },
      accounts: {
        a: {
          upstream: 'https://api.example',
          auth: { flow: 'oauth2', tokenUrl: 'https://id.example/t', clientId: 'x' },
        },
      },
    };
    writeFileSync(join(dir, 'sidecar.json'), JSON.stringify(config));
    const result = await harness.runCli(['check', '--config', join(dir, 'sidecar.json')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'inbound.hosts.0: not a host name: "http://sidecar.example:8080" (write the name alone',
    );
    expect(result.stderr).toContain(
      'inbound.origins.0: not an origin: "https://app.example/path" (write scheme://host[:port]',
    );
  });
});

describe('S3 paths a normalising upstream would misread (through the CLI)', () => {
  it('S3: /a/%ef%bc%8e%ef%bc%8e/b/x (fullwidth full stops) gets 400 bad_request and the upstream never sees it; so do overlong and %u forms', async () => {
    const { running, upstream, tokenServer } = await startScene();
    const tokenRequests = tokenServer.stats.requests;
    for (const target of [
      '/a/%ef%bc%8e%ef%bc%8e/b/x',
      '/a/%ef%bc%8f..%ef%bc%8fb/x',
      '/a/%e0%80%ae%e0%80%ae/b/x',
      '/a/%u002e%u002e/b/x',
      '/a/%e2%80%a5/b/x',
    ]) {
      const raw = await rawExchange(running.data, request('GET', target, { host: 'localhost:8080' }));
      expect(status(raw)).toBe(400);
      expect(errorOf(raw).error).toBe('bad_request');
    }
    expect(upstream.received).toEqual([]);
    expect(tokenServer.stats.requests).toBe(tokenRequests);
  });

  it('S3: raw fullwidth full stops (UTF-8 bytes in the request line) get 400 and the upstream never sees them', async () => {
    const { running, upstream } = await startScene();
    const fullStops = Buffer.from('\uff0e\uff0e', 'utf8').toString('latin1');
    const raw = await rawExchange(running.data, request('GET', `/a/${fullStops}/b/x`, { host: 'localhost:8080' }));
    expect(status(raw)).toBe(400);
    expect(upstream.received).toEqual([]);
  });

  it('S3: UTF-8 names and Latin-1 escapes still pass (the counterpart)', async () => {
    const { running, upstream } = await startScene();
    for (const target of ['/a/users/m%c3%bcller', '/a/q/%e6%97%a5%e6%9c%ac', '/a/legacy/M%fcller', '/a/file%2ejson'])
      expect(status(await rawExchange(running.data, request('GET', target, { host: 'localhost:8080' })))).toBe(200);
    expect(upstream.received).toHaveLength(4);
  });
});

describe('S5 quick mode --host (through the CLI)', () => {
  it('S5: --host (repeated, comma-separated, or BEARER_SIDECAR_HOST) adds accepted Host names; others still get 403', async () => {
    const { tokenServer, password } = await harness.sessionTokenServer();
    const upstream = await startHeaderRecordingUpstream();
    harness.defer(() => upstream.close());
    const quick = [
      '--upstream',
      upstream.url,
      '--login-url',
      tokenServer.loginUrl,
      '--username',
      'u',
      '--listen',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
    ];
    const env = { BEARER_SIDECAR_PASSWORD: password };
    const running = await harness.launchCli([...quick, '--host', 'my-laptop', '--host', 'gw.example,sidecar.lan'], {
      env,
    });
    for (const host of ['my-laptop:8080', 'gw.example', 'sidecar.lan', 'localhost'])
      expect(status(await rawExchange(running.data, request('GET', '/x', { host })))).toBe(200);
    const refused = await rawExchange(running.data, request('GET', '/x', { host: 'attacker.example' }));
    expect(status(refused)).toBe(403);
    expect(upstream.received).toHaveLength(4);
    const fromEnv = await harness.launchCli(quick, { env: { ...env, BEARER_SIDECAR_HOST: 'from-env.lan' } });
    expect(status(await rawExchange(fromEnv.data, request('GET', '/x', { host: 'from-env.lan' })))).toBe(200);
  });

  it('S5: a --host that is not a host name exits 2 with a problem naming the flag', async () => {
    const result = await harness.runCli([
      'check',
      '--upstream',
      'https://api.example',
      '--token-url',
      'https://id.example/t',
      '--client-id',
      'x',
      '--host',
      'http://my-laptop:8080',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--host (BEARER_SIDECAR_HOST): "http://my-laptop:8080" is not a host name');
  });
});
