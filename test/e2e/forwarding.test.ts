import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Sidecar } from '../../src/app.js';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { generatedSecret, metricSum, sessionAuth, useHarness } from '../helpers/harness.js';
import { rawGet, rawRequest, type RecordingUpstream } from '../helpers/recording-upstream.js';

interface Setup {
  sidecar: Sidecar;
  tokenServer: SessionTokenServer;
  crm: RecordingUpstream;
  fleet: RecordingUpstream;
  log: ReturnType<typeof captureLogger>;
}

const harness = useHarness();

/** Two accounts on one session token server: `crm` by prefix and own port, `fleet` the default. */
async function setup(
  overrides: {
    config?: Record<string, unknown>;
    crm?: Record<string, unknown>;
    fleet?: Record<string, unknown>;
    crmUpstream?: RecordingUpstream;
  } = {},
): Promise<Setup> {
  const clock = new FakeClock();
  const { tokenServer, password } = await harness.sessionTokenServer({ now: () => clock.now() });
  const crm = overrides.crmUpstream ?? (await harness.recordingUpstream());
  const fleet = await harness.recordingUpstream();
  const log = captureLogger();
  const auth = sessionAuth(tokenServer);
  const sidecar = await harness.sidecar(
    {
      ...overrides.config,
      // The Host names these tests send (S1 would refuse them otherwise).
      inbound: { hosts: ['sidecar.test', 'other.example'], ...(overrides.config?.inbound as object | undefined) },
      accounts: {
        crm: { upstream: `${crm.url}/v2`, route: { pathPrefix: '/crm', port: 0 }, auth, ...overrides.crm },
        'crm-reports': { upstream: `${crm.url}/reports`, route: { pathPrefix: '/crm/reports' }, auth },
        fleet: { upstream: fleet.url, default: true, auth, ...overrides.fleet },
      },
    },
    { env: { PW: password }, deps: { clock, logger: log.logger } },
  );
  return { sidecar, tokenServer, crm, fleet, log };
}

describe('F1 request and response headers', () => {
  it("F1: Authorization is replaced, sidecar and hop-by-hop headers removed, Host is the upstream's, X-Forwarded-* added", async () => {
    const { sidecar, crm, tokenServer } = await setup();
    await rawGet(sidecar.dataUrl(), '/crm/users', {
      authorization: 'Bearer client-supplied',
      'x-sidecar-account': 'crm',
      'x-sidecar-key': 'k',
      'x-forwarded-for': '203.0.113.9',
      'x-trace': 'kept',
      'x-hop': 'dropped',
      connection: 'close, x-hop',
      'proxy-authorization': 'Basic eA==',
    });
    const seen = crm.requests.at(-1);
    expect(seen?.headers.authorization).toMatch(/^Bearer /);
    expect(tokenServer.isValidToken(String(seen?.headers.authorization).slice(7))).toBe(true);
    expect(seen?.headers).not.toHaveProperty('x-sidecar-account');
    expect(seen?.headers).not.toHaveProperty('x-sidecar-key');
    expect(seen?.headers).not.toHaveProperty('x-hop');
    expect(seen?.headers).not.toHaveProperty('proxy-authorization');
    expect(seen?.headers['x-trace']).toBe('kept');
    expect(seen?.headers.host).toBe(`127.0.0.1:${crm.port}`);
    // S2: the client's own X-Forwarded-For is dropped (127.0.0.1 is not a trusted proxy).
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-forwarded-proto']).toBe('http');
    expect(seen?.headers['x-forwarded-host']).toBe('sidecar.test');
  });

  it('F1/F3: a Connection header naming Content-Length (request smuggling) is refused; the next client is unaffected', async () => {
    const { sidecar, fleet, tokenServer } = await setup();
    const smuggled = 'POST /capture HTTP/1.1\r\nHost: internal\r\nContent-Length: 120\r\n\r\n';
    const attack = await rawRequest(
      sidecar.dataUrl(),
      `GET /x HTTP/1.1\r\nhost: localhost\r\nconnection: close, content-length\r\ncontent-length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    expect(attack.status).toBe(400);
    expect(JSON.parse(attack.body)).toMatchObject({ error: 'bad_request' });
    const victim = await rawGet(sidecar.dataUrl(), '/victim');
    expect(victim.status).toBe(200);
    expect(fleet.requests.map((request) => request.url)).toEqual(['/victim']);
    expect(tokenServer.isValidToken(String(fleet.requests[0]?.headers.authorization).slice(7))).toBe(true);
  });
});

describe('§8 edge-case decisions', () => {
  it('§8: the target is the base path joined with the rest as strings; repeated slashes and the query pass unchanged', async () => {
    const { sidecar, crm } = await setup();
    await rawGet(sidecar.dataUrl(), '/crm/users?x=1&y=%2F&z=a%20b');
    await rawGet(sidecar.dataUrl(), '/crm//other.host/x');
    await rawGet(sidecar.dataUrl(), '/crm');
    expect(crm.requests.map((request) => request.url)).toEqual([
      '/v2/users?x=1&y=%2F&z=a%20b',
      '/v2//other.host/x',
      '/v2',
    ]);
    expect(crm.requests.every((request) => request.headers.host === `127.0.0.1:${crm.port}`)).toBe(true);
  });

  it('§8: a client outside inbound.allow gets 403 forbidden and nothing is forwarded', async () => {
    const { sidecar, fleet } = await setup({ config: { inbound: { allow: ['10.0.0.0/8'] } } });
    const answer = await rawGet(sidecar.dataUrl(), '/x');
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'forbidden' });
    expect(fleet.requests).toHaveLength(0);
  });

  it('§8: with apiKeys set, a missing or wrong X-Sidecar-Key gets 403; a right one passes and is not forwarded', async () => {
    const key = generatedSecret('key');
    const { sidecar, fleet, log } = await setup({
      config: { inbound: { apiKeys: ['${API_KEY_UNSET:-' + key + '}'] } },
    });
    expect((await rawGet(sidecar.dataUrl(), '/x')).status).toBe(403);
    expect((await rawGet(sidecar.dataUrl(), '/x', { 'x-sidecar-key': `${key}x` })).status).toBe(403);
    const ok = await rawGet(sidecar.dataUrl(), '/x', { 'x-sidecar-key': key });
    expect(ok.status).toBe(200);
    expect(fleet.requests).toHaveLength(1);
    expect(fleet.requests[0]?.headers).not.toHaveProperty('x-sidecar-key');
    const status = await (await fetch(`${sidecar.adminUrl()}/status`)).text();
    expect(`${status}${log.text()}`).not.toContain(key);
  });
});

describe('F3 not a forward proxy', () => {
  it.each([
    [
      'absolute-form target',
      'GET http://other.example/ HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n',
      400,
      'bad_request',
    ],
    ['CONNECT', 'CONNECT other.example:443 HTTP/1.1\r\nhost: other.example:443\r\n\r\n', 405, 'method_not_allowed'],
    ['/a/../b', 'GET /crm/../fleet/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
    ['%2e%2e', 'GET /crm/%2e%2e/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
    [
      '%2E%2e mixed case',
      'GET /crm/%2E%2e/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n',
      400,
      'bad_request',
    ],
    ['single dot', 'GET /crm/./x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
    ['%2f', 'GET /crm/a%2f..%2fb HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
    ['%5c', 'GET /crm/a%5Cb HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
    ['raw backslash', 'GET /crm/a\\..\\b HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
    ['asterisk-form', 'OPTIONS * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n', 400, 'bad_request'],
  ])('F3: %s is refused and nothing reaches any upstream', async (_label, text, status, code) => {
    const { sidecar, crm, fleet } = await setup();
    const answer = await rawRequest(sidecar.dataUrl(), text);
    expect(answer.status).toBe(status);
    expect(JSON.parse(answer.body)).toMatchObject({ error: code });
    expect(crm.requests).toHaveLength(0);
    expect(fleet.requests).toHaveLength(0);
    expect(crm.connections + fleet.connections).toBe(0);
  });

  it('F3: a CONNECT whose client resets the connection at once does not crash the process', async () => {
    const { sidecar } = await setup();
    const { port } = new URL(sidecar.dataUrl());
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const socket = connect(Number(port), '127.0.0.1', () => {
          socket.write('CONNECT other.example:443 HTTP/1.1\r\nhost: other.example:443\r\n\r\n');
          socket.resetAndDestroy();
          resolve();
        });
      });
    }
    expect((await rawGet(sidecar.dataUrl(), '/still-alive')).status).toBe(200);
  });
});

describe('§3 configuration', () => {
  it('§3: route precedence: own port, then X-Sidecar-Account, then the longest whole-segment prefix (stripped), then the default', async () => {
    const { sidecar, crm, fleet } = await setup();
    await rawGet(sidecar.accountUrl('crm'), '/fleet/on-crm-port');
    await rawGet(sidecar.dataUrl(), '/by-header', { 'x-sidecar-account': 'crm' });
    await rawGet(sidecar.dataUrl(), '/crm/reports/2026');
    await rawGet(sidecar.dataUrl(), '/crm/contacts');
    await rawGet(sidecar.dataUrl(), '/crmx/not-a-prefix');
    expect(crm.requests.map((request) => request.url)).toEqual([
      '/v2/fleet/on-crm-port',
      '/v2/by-header',
      '/reports/2026',
      '/v2/contacts',
    ]);
    expect(fleet.requests.map((request) => request.url)).toEqual(['/crmx/not-a-prefix']);
  });

  it('§3: the data plane can listen on a unix socket (no address: inbound.allow does not apply, file permissions do)', async () => {
    const dir = harness.tempDir('bs-sock-');
    const path = join(dir, 'bs.sock');
    const { fleet } = await setup({ config: { listen: { path }, inbound: { allow: ['10.0.0.0/8'] } } });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ socketPath: path, path: '/over-the-socket', headers: { host: 'localhost' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
    expect(fleet.requests.map((r) => r.url)).toEqual(['/over-the-socket']);
  });
});

describe('F5 errors the sidecar produces', () => {
  it('F5: no route gives 404 no_route as JSON; an unknown X-Sidecar-Account too', async () => {
    const { sidecar } = await setup();
    const answer = await rawGet(sidecar.dataUrl(), '/x', { 'x-sidecar-account': 'nobody' });
    expect(answer.status).toBe(404);
    expect(answer.raw).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(answer.body)).toEqual({ error: 'no_route', message: expect.stringContaining('nobody') });
  });

  it('F5: an upstream that refuses connections gives 502 upstream_unreachable naming the account', async () => {
    // Port 1 on loopback: nothing listens there, so the refusal is certain (a port freed by this
    // test could be taken by a server of a test running in parallel).
    const { sidecar } = await setup({ crm: { upstream: 'http://127.0.0.1:1/v2' } });
    const answer = await rawGet(sidecar.dataUrl(), '/crm/x');
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'upstream_unreachable', account: 'crm' });
  });
});

describe('F4 upstream pools and TLS', () => {
  it('F4: upstream connections are kept alive and reused', async () => {
    const { sidecar, fleet } = await setup();
    for (let i = 0; i < 50; i++) await fetch(`${sidecar.dataUrl()}/item/${i}`).then((response) => response.text());
    expect(fleet.requests).toHaveLength(50);
    expect(fleet.connections).toBe(1);
  });
});

describe('T8 upstream rejection and replay', () => {
  it('T8 (detection): an upstream 401 is counted, asks for one guarded refresh, and is passed through unchanged', async () => {
    // minInterval (30 s) is longer than waitForToken (10 s): the guard holds the refresh past every wait.
    const { sidecar, fleet, tokenServer } = await setup({ fleet: { refresh: { minInterval: '30s' } } });
    fleet.status = 401;
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${sidecar.dataUrl()}/x`)));
    expect(answers.every((answer) => answer.status === 401 && answer.headers.get('x-upstream') === 'yes')).toBe(true);
    await sidecar.settled();
    const metrics = await (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
    expect(metricSum(metrics, METRIC_NAMES.upstreamRejections, 'account="fleet",code="401"')).toBe(20);
    // Three accounts logged in at startup; the burst of 401s is held back by the guard (no refresh yet).
    expect(tokenServer.stats.requests).toBe(3);
    expect(metricSum(metrics, METRIC_NAMES.tokenRequestsSuppressed, 'account="fleet"')).toBeGreaterThan(0);
    expect(metricSum(metrics, METRIC_NAMES.proxyRequests, 'account="fleet",code="401"')).toBe(20);
  });
});

describe('F4: TLS to the upstream', () => {
  function selfSignedCertificate(): { key: string; cert: string; dir: string } {
    const dir = harness.tempDir('bs-tls-');
    // Made at run time: no private key is ever committed.
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), dir };
  }

  it('verifies certificates by default: an unknown CA gives 502', async () => {
    const tls = selfSignedCertificate();
    const upstream = await harness.recordingUpstream(tls);
    const { sidecar } = await setup({ crmUpstream: upstream });
    const answer = await rawGet(sidecar.dataUrl(), '/crm/x');
    expect(answer.status).toBe(502);
    expect(upstream.requests).toHaveLength(0);
  });

  it('trusts a CA added with upstreamTls.caFile', async () => {
    const tls = selfSignedCertificate();
    const upstream = await harness.recordingUpstream(tls);
    const { sidecar } = await setup({
      crmUpstream: upstream,
      crm: { upstreamTls: { caFile: join(tls.dir, 'cert.pem') } },
    });
    const answer = await rawGet(sidecar.dataUrl(), '/crm/x');
    expect(answer.status).toBe(200);
    expect(upstream.requests.map((request) => request.url)).toEqual(['/v2/x']);
  });

  it('F2/F4: a WebSocket upgrade to a TLS upstream is verified the same way: 502 for an unknown CA, forwarded with upstreamTls.caFile', async () => {
    const tls = selfSignedCertificate();
    const upgrades: string[] = [];
    const server = createHttpsServer({ key: tls.key, cert: tls.cert });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      upgrades.push(String(req.headers.authorization).slice(0, 7));
      socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    harness.defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const crmUpstream = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const upgrade = `GET /crm/room HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
    const untrusted = await setup({ crm: { upstream: crmUpstream } });
    const refused = await rawRequest(untrusted.sidecar.dataUrl(), upgrade);
    expect(refused.status).toBe(502);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'upstream_unreachable', account: 'crm' });
    expect(upgrades).toHaveLength(0);
    const trusted = await setup({ crm: { upstream: crmUpstream, upstreamTls: { caFile: join(tls.dir, 'cert.pem') } } });
    expect((await rawRequest(trusted.sidecar.dataUrl(), upgrade)).status).toBe(101);
    expect(upgrades).toEqual(['Bearer ']);
  });
});
