import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import { startForwardProxy, type ForwardProxy } from '../helpers/forward-proxy.js';
import { startHeaderRecordingUpstream } from '../helpers/ws-upstream.js';
import WebSocket from 'ws';
import { generatedSecret, useHarness, type LaunchedCli } from '../helpers/harness.js';
import { rawGet, type RecordingUpstream } from '../helpers/recording-upstream.js';

const harness = useHarness();

interface World {
  dir: string;
  tokenServer: SessionTokenServer;
  password: string;
  upstream: RecordingUpstream;
}

async function world(tls?: { key: string; cert: string }): Promise<World> {
  const dir = harness.tempDir('bs-egress-');
  const { tokenServer, password } = await harness.sessionTokenServer();
  writeFileSync(join(dir, 'password'), `${password}\n`, { mode: 0o600 });
  const upstream = await harness.recordingUpstream(tls);
  return { dir, tokenServer, password, upstream };
}

async function forwardProxy(basicAuth?: { user: string; password: string }): Promise<ForwardProxy> {
  const proxy = await startForwardProxy(basicAuth === undefined ? {} : { basicAuth });
  harness.defer(() => proxy.close());
  return proxy;
}

/** One account block (YAML, indented for `accounts:`) on the world's token server. */
function account(w: World, name: string, extra: string, upstream = w.upstream.url): string {
  return `  ${name}:
    upstream: ${upstream}
    route: { pathPrefix: /${name} }
    auth:
      flow: session
      loginUrl: ${w.tokenServer.loginUrl}
      refreshUrl: ${w.tokenServer.refreshUrl}
      username: u
      passwordFile: ${join(w.dir, 'password')}
${extra
  .split('\n')
  .filter((line) => line !== '')
  .map((line) => `    ${line}`)
  .join('\n')}
`;
}

function writeConfig(w: World, accounts: string): string {
  const file = join(w.dir, 'sidecar.yaml');
  writeFileSync(
    file,
    // rawGet sends Host: sidecar.test, a name the Host rule must be told about.
    `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\ninbound: { hosts: [sidecar.test] }\naccounts:\n${accounts}`,
  );
  return file;
}

/** The CLI on `file`, once each of `accounts` has had its first login answered (or failed). */
async function launch(file: string, env: NodeJS.ProcessEnv = {}, accounts = ['crm']): Promise<LaunchedCli> {
  const launched = await harness.launchCli(['--config', file], { env });
  for (const name of accounts) {
    await launched.cli.waitForLog(
      (entry) =>
        entry.account === name && typeof entry.msg === 'string' && entry.msg.startsWith('token request: login'),
    );
  }
  return launched;
}

async function statusOf(launched: LaunchedCli, name: string): Promise<Record<string, unknown>> {
  const status = (await (await fetch(`${launched.admin}/status`)).json()) as {
    accounts: Record<string, Record<string, unknown>>;
  };
  return status.accounts[name] as Record<string, unknown>;
}

/** The token the upstream was shown in `value`, checked to be one the token server issued. */
function issuedToken(w: World, value: string | undefined, pattern: RegExp): string {
  const token = pattern.exec(value ?? '')?.[1];
  expect(token).toBeDefined();
  expect(w.tokenServer.isValidToken(token as string)).toBe(true);
  return token as string;
}

describe('E5 where the token goes', () => {
  it("E5: inject.header with inject.format writes 'Token <token>'; the client's own value of that header and its Authorization are removed", async () => {
    const w = await world();
    const file = writeConfig(w, account(w, 'crm', 'inject: { header: X-Api-Token, format: "Token {token}" }'));
    const launched = await launch(file);
    const answer = await rawGet(launched.data, '/crm/items', {
      'X-Api-Token': 'client-own-value',
      Authorization: 'Bearer client-supplied',
    });
    expect(answer.status).toBe(200);
    const seen = w.upstream.requests[0];
    const token = issuedToken(w, seen?.headers['x-api-token'] as string, /^Token (\S+)$/);
    expect(seen?.headers.authorization).toBeUndefined();
    expect(JSON.stringify(seen?.headers)).not.toContain('client-own-value');
    expect(launched.cli.stdout() + launched.cli.stderr()).not.toContain(token);
  });

  it("E5: inject.query puts the token in that parameter; the client's own (as sent or percent-encoded) is removed, the others unchanged and in order", async () => {
    const w = await world();
    const file = writeConfig(w, account(w, 'crm', 'inject: { query: access_token }'));
    const launched = await launch(file);
    const answer = await rawGet(
      launched.data,
      '/crm/items?b=2&access_token=mine&a=%20x&access%5Ftoken=also-mine&&z=%zz',
      { Authorization: 'Bearer client-supplied' },
    );
    expect(answer.status).toBe(200);
    const seen = w.upstream.requests[0];
    const match = /^\/items\?b=2&a=%20x&&z=%zz&access_token=([^&]+)$/.exec(seen?.url ?? '');
    expect(match, seen?.url).not.toBeNull();
    const token = issuedToken(w, decodeURIComponent(match?.[1] ?? ''), /^(.+)$/);
    expect(seen?.headers.authorization).toBeUndefined();
    expect(launched.cli.stdout() + launched.cli.stderr()).not.toContain(token);
  });

  it('E5: in query placement an upstream redirect naming the token reaches the client without it', async () => {
    const w = await world();
    const file = writeConfig(w, account(w, 'crm', 'inject: { query: access_token }'));
    const launched = await launch(file);
    w.upstream.answerHeaders = (request) => ({ location: request.url, 'content-location': request.url });
    const answer = await rawGet(launched.data, '/crm/items?a=1;access_token=EVIL&ACCESS_TOKEN=EVIL');
    expect(answer.status).toBe(200);
    const seen = w.upstream.requests[0];
    const match = /^\/items\?a=1&access_token=([^&;]+)$/.exec(seen?.url ?? '');
    expect(match, seen?.url).not.toBeNull();
    const head = answer.raw.split('\r\n\r\n', 1)[0] ?? '';
    expect(head).toMatch(/\r\nlocation: \/items\?a=1\r\n/i);
    expect(head).not.toContain(match?.[1] ?? 'unmatched');
    expect(head).not.toContain(decodeURIComponent(match?.[1] ?? 'unmatched'));
  });
});

describe('E6 egress proxies', () => {
  it('E6: with HTTP_PROXY set, token requests and upstream requests go through the proxy (absolute-form); /status and check name it', async () => {
    const w = await world();
    const proxy = await forwardProxy();
    const file = writeConfig(w, account(w, 'crm', ''));
    const launched = await launch(file, { HTTP_PROXY: proxy.url });
    expect((await rawGet(launched.data, '/crm/items?x=1')).status).toBe(200);
    expect(proxy.requests()).toEqual([
      `POST ${w.tokenServer.loginUrl} HTTP/1.1`,
      `GET ${w.upstream.url}/items?x=1 HTTP/1.1`,
    ]);
    expect((await statusOf(launched, 'crm')).proxy).toEqual({
      upstream: `${proxy.url} (HTTP_PROXY)`,
      tokenEndpoint: `${proxy.url} (HTTP_PROXY)`,
    });
    const check = await harness.runCli(['check', '--config', file, '--json'], { env: { http_proxy: proxy.url } });
    expect(check.code).toBe(0);
    const report = JSON.parse(check.stdout) as { accounts: Array<{ proxy: unknown }> };
    expect(report.accounts[0]?.proxy).toEqual({
      upstream: `${proxy.url} (HTTP_PROXY)`,
      tokenEndpoint: `${proxy.url} (HTTP_PROXY)`,
    });
    expect(proxy.requests().filter((line) => line.startsWith('POST'))).toHaveLength(2);
  });

  it('E6: a WebSocket upgrade goes through the proxy too, in a CONNECT tunnel, with the token', async () => {
    const w = await world();
    const wsUpstream = await startHeaderRecordingUpstream();
    harness.defer(() => wsUpstream.close());
    const proxy = await forwardProxy();
    const file = writeConfig(w, account(w, 'crm', '', wsUpstream.url));
    const launched = await launch(file, { HTTP_PROXY: proxy.url });
    const socket = new WebSocket(`${launched.data.replace('http', 'ws')}/crm/live`);
    harness.defer(() => socket.terminate());
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
      socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    expect(proxy.requests()).toContain(`CONNECT ${new URL(wsUpstream.url).host} HTTP/1.1`);
    const upgrade = wsUpstream.received.find((each) => each.kind === 'upgrade');
    expect(w.tokenServer.isValidToken(String(upgrade?.headers.authorization).slice('Bearer '.length))).toBe(true);
  });

  it('E6: NO_PROXY excludes a host:port as undici reads it: that target goes direct, the others through the proxy', async () => {
    const w = await world();
    const proxy = await forwardProxy();
    const file = writeConfig(w, account(w, 'crm', ''));
    const launched = await launch(file, {
      HTTP_PROXY: proxy.url,
      NO_PROXY: `example.org, 127.0.0.1:${w.upstream.port}`,
    });
    expect((await rawGet(launched.data, '/crm/direct')).status).toBe(200);
    expect(w.upstream.requests.map((request) => request.url)).toEqual(['/direct']);
    expect(proxy.requests()).toEqual([`POST ${w.tokenServer.loginUrl} HTTP/1.1`]);
    expect((await statusOf(launched, 'crm')).proxy).toEqual({
      upstream: 'direct',
      tokenEndpoint: `${proxy.url} (HTTP_PROXY)`,
    });
  });

  it('E6: an https upstream is reached through a CONNECT tunnel (HTTPS_PROXY), its certificate still verified; a wss upgrade too', async () => {
    const tlsDir = harness.tempDir('bs-egress-tls-');
    // Made at run time: no private key is ever committed.
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1'],
        ...[
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(tlsDir, 'key.pem'),
          '-out',
          join(tlsDir, 'cert.pem'),
        ],
      ],
      { stdio: 'ignore' },
    );
    const tls = {
      key: readFileSync(join(tlsDir, 'key.pem'), 'utf8'),
      cert: readFileSync(join(tlsDir, 'cert.pem'), 'utf8'),
    };
    const w = await world(tls);
    const proxy = await forwardProxy();
    const file = writeConfig(w, account(w, 'crm', `upstreamTls: { caFile: ${join(tlsDir, 'cert.pem')} }`));
    // HTTPS_PROXY only: the http token endpoint goes direct, the https upstream through the tunnel.
    const launched = await launch(file, { HTTPS_PROXY: proxy.url });
    expect((await rawGet(launched.data, '/crm/secure')).status).toBe(200);
    expect(w.upstream.requests.map((request) => request.url)).toEqual(['/secure']);
    expect(proxy.requests()).toEqual([`CONNECT 127.0.0.1:${w.upstream.port} HTTP/1.1`]);
    // A wss upgrade takes a tunnel of its own, TLS inside it; this upstream refuses it (200): passed on.
    const socket = new WebSocket(`${launched.data.replace('http', 'ws')}/crm/live`);
    harness.defer(() => socket.terminate());
    const status = await new Promise<number | undefined>((resolve) => {
      socket.once('open', () => resolve(101));
      socket.once('error', () => resolve(undefined));
      socket.once('unexpected-response', (_req, res) => resolve(res.statusCode));
    });
    expect(status).toBe(200);
    expect(w.upstream.requests.at(-1)).toMatchObject({ url: '/live', headers: { upgrade: 'websocket' } });
    expect(proxy.requests()).toEqual([
      `CONNECT 127.0.0.1:${w.upstream.port} HTTP/1.1`,
      `CONNECT 127.0.0.1:${w.upstream.port} HTTP/1.1`,
    ]);
  });

  it('E6: accounts.NAME.proxy overrides the environment for that account; proxy: null goes direct', async () => {
    const w = await world();
    const fromEnv = await forwardProxy();
    const own = await forwardProxy();
    const file = writeConfig(w, account(w, 'own', `proxy: ${own.url}`) + account(w, 'none', 'proxy: null'));
    const launched = await launch(file, { HTTP_PROXY: fromEnv.url }, ['own', 'none']);
    expect((await rawGet(launched.data, '/own/a')).status).toBe(200);
    expect((await rawGet(launched.data, '/none/b')).status).toBe(200);
    expect(fromEnv.requests()).toEqual([]);
    expect(own.requests()).toEqual([`POST ${w.tokenServer.loginUrl} HTTP/1.1`, `GET ${w.upstream.url}/a HTTP/1.1`]);
    expect((await statusOf(launched, 'own')).proxy).toEqual({
      upstream: `${own.url} (accounts.own.proxy)`,
      tokenEndpoint: `${own.url} (accounts.own.proxy)`,
    });
    expect((await statusOf(launched, 'none')).proxy).toEqual({ upstream: 'direct', tokenEndpoint: 'direct' });
  });

  it("E6: proxy credentials from proxyAuthFile (over the URL's) or from the URL are sent; without them the proxy answers 407; they never show", async () => {
    const user = 'egress-user';
    const secret = generatedSecret('proxy-pw');
    const wrong = generatedSecret('wrong-pw');
    const w = await world();
    const proxy = await forwardProxy({ user, password: secret });
    writeFileSync(join(w.dir, 'proxy-auth'), `${user}:${secret}\n`, { mode: 0o600 });
    const withCredentials = (password: string) => proxy.url.replace('http://', `http://${user}:${password}@`);
    const file = writeConfig(
      w,
      account(w, 'filed', `proxyAuthFile: ${join(w.dir, 'proxy-auth')}`) +
        account(w, 'inline', `proxy: ${withCredentials(secret)}`) +
        account(w, 'bare', `proxy: ${proxy.url}\nrefresh: { waitForToken: 200ms }`),
    );
    // The environment's proxy URL has the wrong password: `filed` gets through with its file's.
    const launched = await launch(file, { HTTP_PROXY: withCredentials(wrong) }, ['filed', 'inline', 'bare']);
    expect((await rawGet(launched.data, '/filed/a')).status).toBe(200);
    expect((await rawGet(launched.data, '/inline/b')).status).toBe(200);
    const bare = await statusOf(launched, 'bare');
    expect(bare.ready).toBe(false);
    expect(JSON.stringify(bare.lastError)).toContain(`via proxy ${proxy.url}: the proxy answered 407`);
    const refused = await rawGet(launched.data, '/bare/c');
    expect(refused.status).toBe(503);
    expect(w.upstream.requests.map((request) => request.url)).toEqual(['/a', '/b']);
    const shown = [
      launched.cli.stdout(),
      launched.cli.stderr(),
      JSON.stringify(await (await fetch(`${launched.admin}/status`)).json()),
      await (await fetch(`${launched.admin}/metrics`)).text(),
      refused.raw,
    ].join('\n');
    for (const password of [secret, wrong]) {
      expect(shown).not.toContain(password);
      expect(shown).not.toContain(Buffer.from(`${user}:${password}`).toString('base64'));
    }
    expect((await statusOf(launched, 'filed')).proxy).toEqual({
      upstream: `${proxy.url} (HTTP_PROXY)`,
      tokenEndpoint: `${proxy.url} (HTTP_PROXY)`,
    });
  });

  it('E6: a proxy that is down fails token requests like an unreachable token server, and upstream requests with a 502 naming the proxy', async () => {
    const w = await world();
    const proxy = await forwardProxy();
    await proxy.stop();
    const tokenPort = new URL(w.tokenServer.loginUrl).port;
    const file = writeConfig(w, account(w, 'crm', '') + account(w, 'cut', `proxy: ${proxy.url}`));
    // crm's token endpoint is excluded (direct); its upstream is not: through the dead proxy.
    const launched = await launch(file, { HTTP_PROXY: proxy.url, NO_PROXY: `127.0.0.1:${tokenPort}` }, ['crm', 'cut']);
    const answer = await rawGet(launched.data, '/crm/x');
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'upstream_unreachable' });
    expect(answer.body).toContain(`via proxy ${proxy.url}: connection refused`);
    const cut = await statusOf(launched, 'cut');
    expect(cut.state).not.toBe('valid');
    expect(JSON.stringify(cut.lastError)).toContain(`via proxy ${proxy.url}: connection refused`);
    expect((await fetch(`${launched.admin}/healthz`)).status).toBe(200);
    expect(launched.cli.child.exitCode).toBeNull();
  });
});
