import { writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { generatedSecret, useHarness, type LaunchedCli } from '../helpers/harness.js';
import { startHeaderRecordingUpstream } from '../helpers/ws-upstream.js';

/*
 * Issue 19, inputs 2 and 3, through the real CLI: who may use the admin port (S4), which
 * forwarding headers reach the upstream (S2), and quick mode's --api-key-file (S5).
 */

const harness = useHarness();

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request with exactly these headers (Host included, when given). */
function send(base: string, path: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const req = request(new URL(path, base), { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A sidecar (the built CLI, JSON logs) with one default session account in front of `upstream`. */
async function startCli(options: {
  upstream: string;
  admin?: Record<string, unknown>;
  inbound?: Record<string, unknown>;
}): Promise<LaunchedCli> {
  const { tokenServer, password } = await harness.sessionTokenServer();
  const dir = harness.tempDir('bs-access-');
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, ...options.admin },
    ...(options.inbound === undefined ? {} : { inbound: options.inbound }),
    accounts: {
      api: {
        upstream: options.upstream,
        default: true,
        auth: {
          flow: 'session',
          loginUrl: tokenServer.loginUrl,
          refreshUrl: tokenServer.refreshUrl,
          username: 'u',
          password: '${PW}',
        },
      },
    },
  };
  writeFileSync(join(dir, 'sidecar.json'), JSON.stringify(config));
  return harness.launchCli(['--config', join(dir, 'sidecar.json')], { env: { PW: password } });
}

/** The port of a URL, for Host headers that name the listener. */
function portOf(url: string): string {
  return new URL(url).port;
}

/** What the input 3 sends: every forwarding header a client can make up. */
const CLAIMED = {
  forwarded: 'for=6.6.6.6;host=evil.example;proto=https',
  'x-real-ip': '6.6.6.6',
  'x-forwarded-for': '6.6.6.6',
  'x-forwarded-port': '443',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'evil.example',
};

describe('S4 admin port access', () => {
  it('S4: a POST with a foreign Host gets 403 (DNS rebinding); with a good Host and a foreign Origin, 403 too', async () => {
    const upstream = await harness.recordingUpstream();
    const { admin } = await startCli({ upstream: upstream.url });
    const rebound = await send(admin, '/accounts/api/refresh', {
      method: 'POST',
      headers: { host: 'attacker.example', origin: 'http://attacker.example' },
    });
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body)).toMatchObject({ error: 'forbidden' });
    expect(JSON.parse(rebound.body).message).toContain('"attacker.example"');
    expect(JSON.parse(rebound.body).message).toContain('inbound.hosts');

    const crossSite = await send(admin, '/accounts/api/refresh', {
      method: 'POST',
      headers: { host: `127.0.0.1:${portOf(admin)}`, origin: 'http://attacker.example' },
    });
    expect(crossSite.status).toBe(403);
    expect(JSON.parse(crossSite.body).message).toContain('http://attacker.example');
    const status = await send(admin, '/status', { headers: { origin: 'http://attacker.example' } });
    expect(status.status).toBe(403);
    const fetchMetadata = await send(admin, '/status', { headers: { 'sec-fetch-site': 'cross-site' } });
    expect(fetchMetadata.status).toBe(403);
  });

  it("S4: the admin port's own page may POST (same origin), and a Host in inbound.hosts is accepted", async () => {
    const upstream = await harness.recordingUpstream();
    const { admin } = await startCli({ upstream: upstream.url, inbound: { hosts: ['sidecar.tools.svc'] } });
    const host = `127.0.0.1:${portOf(admin)}`;
    const own = await send(admin, '/accounts/api/refresh', {
      method: 'POST',
      headers: { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' },
    });
    expect(own.status).toBe(202);
    const named = await send(admin, '/status?format=json', { headers: { host: `sidecar.tools.svc:${portOf(admin)}` } });
    expect(named.status).toBe(200);
    const localhost = await send(admin, '/metrics', { headers: { host: `localhost:${portOf(admin)}` } });
    expect(localhost.status).toBe(200);
  });

  it('S4: a client outside admin.allow gets 403 naming its address and admin.allow, on every endpoint', async () => {
    const upstream = await harness.recordingUpstream();
    const { admin, data } = await startCli({ upstream: upstream.url, admin: { allow: ['10.0.0.0/8'] } });
    for (const path of ['/healthz', '/readyz', '/metrics', '/status']) {
      const answer = await send(admin, path);
      expect(answer.status, path).toBe(403);
      expect(JSON.parse(answer.body).message, path).toContain('client address 127.0.0.1 may not use the admin port');
      expect(JSON.parse(answer.body).message, path).toContain('admin.allow');
    }
    // The data plane keeps its own allow-list.
    expect((await send(data, '/x')).status).toBe(200);
  });

  it('S4: with admin.apiKeys, /status (JSON and HTML) and POSTs need Authorization: Bearer <key>: 401 with WWW-Authenticate without it, 200 with it', async () => {
    const upstream = await harness.recordingUpstream();
    const key = generatedSecret('admin-key');
    const { admin } = await startCli({ upstream: upstream.url, admin: { apiKeys: [key] } });
    const refused: Array<Record<string, string>> = [
      {},
      { accept: 'text/html' },
      { authorization: 'Bearer wrong' },
      { authorization: key },
    ];
    for (const headers of refused) {
      const answer = await send(admin, '/status', { headers });
      expect(answer.status, JSON.stringify(headers)).toBe(401);
      expect(answer.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(JSON.parse(answer.body)).toMatchObject({ error: 'unauthorized' });
      expect(answer.body).not.toContain(key);
    }
    expect((await send(admin, '/accounts/api/refresh', { method: 'POST' })).status).toBe(401);

    const auth = { authorization: `Bearer ${key}` };
    expect((await send(admin, '/status', { headers: auth })).status).toBe(200);
    const page = await send(admin, '/status', { headers: { ...auth, accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect((await send(admin, '/accounts/api/refresh', { method: 'POST', headers: auth })).status).toBe(202);
  });

  it('S4: /metrics, /healthz and /readyz need no key (probes and scrapes by IP literal)', async () => {
    const upstream = await harness.recordingUpstream();
    const { admin } = await startCli({ upstream: upstream.url, admin: { apiKeys: [generatedSecret('k')] } });
    const byIp = { headers: { host: `127.0.0.1:${portOf(admin)}` } };
    // Ready once the first token is in: the listening line comes before the first login ends.
    await vi.waitFor(async () => expect((await send(admin, '/readyz', byIp)).status).toBe(200));
    for (const path of ['/metrics', '/healthz', '/readyz'])
      expect((await send(admin, path, byIp)).status, path).toBe(200);
  });

  it('S4: an admin port bound to all addresses, open to any address and without keys, logs one warning at start naming both settings', async () => {
    const upstream = await harness.recordingUpstream();
    const { cli } = await startCli({ upstream: upstream.url, admin: { host: '0.0.0.0' } });
    const warnings = cli
      .stdout()
      .split('\n')
      .filter((line) => line.includes('the admin port listens on'));
    expect(warnings).toHaveLength(1);
    const line = JSON.parse(warnings[0]!) as { level: unknown; msg: string };
    expect(line.msg).toContain('0.0.0.0');
    expect(line.msg).toContain('admin.allow');
    expect(line.msg).toContain('admin.apiKeys');
  });

  it('S4: no warning on loopback, or with admin.allow narrowed, or with admin.apiKeys set', async () => {
    const upstream = await harness.recordingUpstream();
    for (const admin of [
      {},
      { host: '0.0.0.0', allow: ['10.0.0.0/8', '127.0.0.1'] },
      { host: '0.0.0.0', apiKeys: ['k'] },
    ]) {
      const { cli } = await startCli({ upstream: upstream.url, admin });
      expect(cli.stdout(), JSON.stringify(admin)).not.toContain('the admin port listens on');
    }
  });
});

describe('S2 forwarding headers', () => {
  it("S2: a client's Forwarded, X-Real-IP and X-Forwarded-* never reach the upstream; X-Forwarded-For is the client address only", async () => {
    const upstream = await harness.recordingUpstream();
    const { data } = await startCli({ upstream: upstream.url });
    const host = `127.0.0.1:${portOf(data)}`;
    expect((await send(data, '/x', { headers: { host, ...CLAIMED } })).status).toBe(200);
    const seen = upstream.requests.at(-1)?.headers ?? {};
    expect(seen).not.toHaveProperty('forwarded');
    expect(seen).not.toHaveProperty('x-real-ip');
    expect(seen).not.toHaveProperty('x-forwarded-port');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe(host);
  });

  it('S2: from a client in inbound.trustedProxies they are kept and X-Forwarded-For is appended to', async () => {
    const upstream = await harness.recordingUpstream();
    const { data } = await startCli({ upstream: upstream.url, inbound: { trustedProxies: ['127.0.0.0/8'] } });
    expect((await send(data, '/x', { headers: { host: `127.0.0.1:${portOf(data)}`, ...CLAIMED } })).status).toBe(200);
    const seen = upstream.requests.at(-1)?.headers ?? {};
    expect(seen.forwarded).toBe(`${CLAIMED.forwarded}, for=127.0.0.1`);
    expect(seen['x-real-ip']).toBe('6.6.6.6');
    expect(seen['x-forwarded-port']).toBe('443');
    expect(seen['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-host']).toBe('evil.example');
  });

  it('S2: the same holds for a WebSocket upgrade: dropped from a client, kept from a trusted proxy', async () => {
    const upstream = await startHeaderRecordingUpstream();
    harness.defer(() => upstream.close());
    for (const trustedProxies of [[], ['127.0.0.1/32']]) {
      const { data } = await startCli({ upstream: upstream.url, inbound: { trustedProxies } });
      const ws = new WebSocket(`${data.replace('http', 'ws')}/socket`, { headers: CLAIMED });
      await new Promise<void>((resolve, reject) => {
        ws.once('close', () => resolve());
        ws.once('error', reject);
      });
      const seen = upstream.received.filter((entry) => entry.kind === 'upgrade').at(-1)?.headers ?? {};
      if (trustedProxies.length === 0) {
        expect(seen).not.toHaveProperty('forwarded');
        expect(seen).not.toHaveProperty('x-real-ip');
        expect(seen).not.toHaveProperty('x-forwarded-port');
        expect(seen['x-forwarded-for']).toBe('127.0.0.1');
        expect(seen['x-forwarded-proto']).toBe('http');
      } else {
        expect(seen.forwarded).toBe(`${CLAIMED.forwarded}, for=127.0.0.1`);
        expect(seen['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
        expect(seen['x-forwarded-port']).toBe('443');
      }
    }
  });

  it('S2: an inbound.trustedProxies entry that is not a range is refused at start with the nearest fix', async () => {
    const upstream = await harness.recordingUpstream();
    const dir = harness.tempDir('bs-access-');
    const config = {
      inbound: { trustedProxies: ['10.0.*'] },
      accounts: { api: { upstream: upstream.url, auth: { flow: 'oauth2', tokenUrl: upstream.url, clientId: 'c' } } },
    };
    writeFileSync(join(dir, 'c.json'), JSON.stringify(config));
    const { code, stderr, stdout } = await harness.runCli(['--config', join(dir, 'c.json')]);
    expect(code).not.toBe(0);
    expect(stderr + stdout).toContain('inbound.trustedProxies');
    expect(stderr + stdout).toContain('did you mean 10.0.0.0/16?');
  });
});

describe('S5 quick mode flags', () => {
  it('S5: --api-key-file (or BEARER_SIDECAR_API_KEY_FILE) makes clients send X-Sidecar-Key with a key of the file', async () => {
    const upstream = await harness.recordingUpstream();
    const { tokenServer, password } = await harness.sessionTokenServer();
    const dir = harness.tempDir('bs-access-');
    const [first, second] = [generatedSecret('key'), generatedSecret('key')];
    writeFileSync(join(dir, 'keys'), `${first}\n${second}\n`);
    writeFileSync(join(dir, 'pw'), password);
    const flags = [
      ...['--upstream', upstream.url, '--login-url', tokenServer.loginUrl, '--username', 'u'],
      ...['--password-file', join(dir, 'pw'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'],
    ];
    for (const launch of [
      () => harness.launchCli([...flags, '--api-key-file', join(dir, 'keys')]),
      () => harness.launchCli(flags, { env: { BEARER_SIDECAR_API_KEY_FILE: join(dir, 'keys') } }),
    ]) {
      const { data, admin } = await launch();
      const host = `127.0.0.1:${portOf(data)}`;
      expect((await send(data, '/x', { headers: { host } })).status).toBe(403);
      expect((await send(data, '/x', { headers: { host, 'x-sidecar-key': 'wrong' } })).status).toBe(403);
      expect((await send(data, '/x', { headers: { host, 'x-sidecar-key': first } })).status).toBe(200);
      expect((await send(data, '/x', { headers: { host, 'x-sidecar-key': second } })).status).toBe(200);
      // The admin port has keys of its own (admin.apiKeys): the data-plane key file does not set them.
      expect((await send(admin, '/status?format=json')).status).toBe(200);
    }
  });

  it('S5: an --api-key-file that cannot be read is a start-up problem naming the flag', async () => {
    const { code, stderr } = await harness.runCli([
      ...['--upstream', 'http://127.0.0.1:1', '--token-url', 'http://127.0.0.1:1/t', '--client-id', 'c'],
      ...['--api-key-file', '/nonexistent/keys'],
    ]);
    expect(code).not.toBe(0);
    expect(stderr).toContain('--api-key-file (BEARER_SIDECAR_API_KEY_FILE)');
  });
});
