import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { Sidecar } from '../../src/app.js';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FaultTokenServer, type FaultMode } from '../helpers/fault-token-server.js';
import { issuedSecrets, metricSum, recordingSend, useHarness } from '../helpers/harness.js';
import type { RecordingUpstream } from '../helpers/recording-upstream.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;

interface Setup {
  sidecar: Sidecar;
  /** The token server's real password (generated at run time). */
  password: string;
  clock: FakeClock;
  tokenServer: SessionTokenServer;
  front: FaultTokenServer;
  upstream: RecordingUpstream;
  revoked: Set<string>;
  issued: () => string[];
  sentAt: number[];
  log: ReturnType<typeof captureLogger>;
  advance(ms: number): Promise<void>;
  metrics(): Promise<string>;
}

const harness = useHarness();

/**
 * A real session token server behind a fault-injecting front, and an upstream that accepts
 * only live, unrevoked tokens of that server. Time on a fake clock.
 */
async function setup(
  options: {
    lifetimeSeconds?: number;
    refresh?: Record<string, unknown>;
    account?: Record<string, unknown>;
    passwordFile?: string;
  } = {},
): Promise<Setup> {
  const clock = new FakeClock();
  const { tokenServer, password } = await harness.sessionTokenServer({
    lifetimeSeconds: options.lifetimeSeconds ?? 600,
    now: () => clock.now(),
  });
  const front = await harness.faultFront(tokenServer.url);
  const upstream = await harness.recordingUpstream();
  const revoked = new Set<string>();
  upstream.decide = (request) => {
    const token = String(request.headers.authorization ?? '').replace(/^Bearer /, '');
    return tokenServer.isValidToken(token) && !revoked.has(token) ? 200 : 401;
  };
  const recorder = recordingSend(undefined, () => clock.now());
  const log = captureLogger();
  const sidecar = await harness.sidecar(
    {
      accounts: {
        fleet: {
          upstream: upstream.url,
          default: true,
          // Token requests time out in real time: a short limit only where a test waits for it
          // (a stalled token server), so that a busy machine's slow login is no timeout.
          refresh: { timeout: '10s', ...options.refresh },
          auth: {
            flow: 'session',
            loginUrl: front.url('/auth/login'),
            refreshUrl: front.url('/auth/refresh'),
            username: 'u',
            ...(options.passwordFile ? { passwordFile: options.passwordFile } : { password: '${PW}' }),
          },
          ...options.account,
        },
      },
    },
    { env: { PW: password }, deps: { clock, logger: log.logger, send: recorder.send, random: () => 0.5 } },
  );
  const issued = () => issuedSecrets(recorder.responses);
  return {
    sidecar,
    password,
    clock,
    tokenServer,
    front,
    upstream,
    revoked,
    issued,
    sentAt: recorder.sentAt,
    log,
    advance: (ms) => clock.advance(ms, () => sidecar.settled()),
    metrics: async () => (await fetch(`${sidecar.adminUrl()}/metrics`)).text(),
  };
}

/** The access token the sidecar uses now (the newest `token` issued). */
function currentAccessToken(s: Setup): string {
  const tokens = s.issued().filter((value) => s.tokenServer.isValidToken(value));
  const token = tokens.at(-1);
  if (token === undefined) throw new Error('no live token');
  return token;
}

describe('T8: upstream rejection and replay', () => {
  it('T8: 100 concurrent requests answered 401 for one token generation cause exactly one refresh, and each is replayed once and answered 200', async () => {
    const s = await setup({ lifetimeSeconds: 600 });
    await s.advance(61 * SECOND); // past the guard of the startup login
    s.revoked.add(currentAccessToken(s));
    // All 100 reach the upstream with the revoked token before any of them is answered.
    let release: () => void = () => undefined;
    s.upstream.hold = new Promise((resolve) => (release = resolve));
    const pending = Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        fetch(`${s.sidecar.dataUrl()}/orders`, {
          method: 'POST',
          body: `{"order":${i}}`,
          headers: { 'content-type': 'application/json' },
        }),
      ),
    );
    await vi.waitFor(() => expect(s.upstream.requests).toHaveLength(100), { timeout: 20_000 });
    s.upstream.hold = undefined;
    release();
    const answers = await pending;
    expect(answers.map((answer) => answer.status)).toEqual(Array(100).fill(200));
    expect(s.tokenServer.stats.refreshes).toBe(1);
    expect(s.upstream.requests).toHaveLength(200);
    // Every replay carried the same body as its first attempt.
    const bodies = s.upstream.requests.map((request) => request.body);
    for (let i = 0; i < 100; i++) expect(bodies.filter((body) => body === `{"order":${i}}`)).toHaveLength(2);
    const metrics = await s.metrics();
    expect(metricSum(metrics, METRIC_NAMES.replays, 'outcome="success"')).toBe(100);
    expect(metricSum(metrics, METRIC_NAMES.upstreamRejections, 'code="401"')).toBe(100);
    expect(metricSum(metrics, METRIC_NAMES.tokenRequests, 'trigger="upstream_rejection"')).toBe(1);
    expect(metricSum(metrics, METRIC_NAMES.tokenRequestsSuppressed)).toBe(0);
  });

  it('T8: a request whose body is larger than replayMaxBody is not replayed; the 401 is passed through unchanged', async () => {
    const s = await setup({ refresh: { replayMaxBody: 1024 } });
    await s.advance(61 * SECOND);
    s.revoked.add(currentAccessToken(s));
    const answer = await fetch(`${s.sidecar.dataUrl()}/upload`, { method: 'POST', body: 'x'.repeat(4096) });
    expect(answer.status).toBe(401);
    expect(answer.headers.get('x-upstream')).toBe('yes');
    expect(await answer.json()).toEqual({ seen: '/upload', bodyLength: 4096 });
    expect(s.upstream.requests).toHaveLength(1);
    expect(metricSum(await s.metrics(), METRIC_NAMES.replays, 'outcome="skipped"')).toBe(1);
    // The refresh was still asked for: the next request gets the new token.
    await s.sidecar.settled();
    expect((await fetch(`${s.sidecar.dataUrl()}/after`)).status).toBe(200);
  });

  it('T8/T6: when the guard holds the refresh back longer than waitForToken, the 401 is passed through unchanged', async () => {
    // minInterval (30 s) is longer than waitForToken (10 s): the refresh cannot come in time.
    const s = await setup({ lifetimeSeconds: 600, refresh: { minInterval: '30s' } });
    s.revoked.add(currentAccessToken(s));
    const answer = await fetch(`${s.sidecar.dataUrl()}/x`);
    expect(answer.status).toBe(401);
    expect(answer.headers.get('x-upstream')).toBe('yes');
    expect(s.tokenServer.stats.refreshes).toBe(0);
    expect(metricSum(await s.metrics(), METRIC_NAMES.replays, 'outcome="no_token"')).toBe(1);
  });

  it('T8: a replay rejected again is passed through and never replayed a second time', async () => {
    const s = await setup();
    await s.advance(61 * SECOND);
    s.upstream.decide = () => 401;
    const answer = await fetch(`${s.sidecar.dataUrl()}/always-401`);
    expect(answer.status).toBe(401);
    expect(s.upstream.requests).toHaveLength(2);
    expect(metricSum(await s.metrics(), METRIC_NAMES.replays, 'outcome="rejected_again"')).toBe(1);
  });
});

describe('T5: token endpoint faults', () => {
  it.each<FaultMode>([
    'status-500',
    'garbage-json',
    'html',
    'empty-200',
    'no-token-200',
    'half-close',
    'reset',
    'stall',
  ])(
    'T5: a token server answering with %s ends as a counted error: no crash, no lost refresh token, clients unaffected',
    async (mode) => {
      const s = await setup({ lifetimeSeconds: 100, refresh: mode === 'stall' ? { timeout: '300ms' } : {} });
      s.front.mode = mode;
      await s.advance(80 * SECOND); // the scheduled refresh meets the fault
      const metrics = await s.metrics();
      expect(metricSum(metrics, METRIC_NAMES.tokenRequests, 'outcome="error"')).toBeGreaterThanOrEqual(1);
      expect((await fetch(`${s.sidecar.dataUrl()}/x`)).status).toBe(200);
      s.front.mode = 'pass';
      await s.advance(30 * SECOND);
      // The chain goes on from the same refresh token: no new login, no reuse, no rejection.
      expect(s.tokenServer.stats.logins).toBe(1);
      expect(s.tokenServer.stats.refreshes).toBe(1);
      expect(s.tokenServer.stats.refreshTokenReuse).toBe(0);
      expect(s.tokenServer.stats.rejectedRefreshes).toBe(0);
      expect((await fetch(`${s.sidecar.dataUrl()}/x`)).status).toBe(200);
      expect(metricSum(await s.metrics(), METRIC_NAMES.tokenRequests)).toBe(s.front.received);
    },
  );

  it('T5: token server down for 10 simulated minutes: no client error while the token is valid, backoff, and a fresh token one step after it returns', async () => {
    const s = await setup({ lifetimeSeconds: 60 });
    await s.advance(45 * SECOND);
    await s.front.down();
    const downAt = s.clock.now();
    const before = s.sentAt.length;
    const statuses: number[] = [];
    while (s.clock.now() - downAt < 10 * MINUTE) {
      // Only while the token is valid: after expiry a request would wait on the fake clock.
      if (s.sidecar.manager('fleet')?.current() !== undefined)
        statuses.push((await fetch(`${s.sidecar.dataUrl()}/x`)).status);
      await s.advance(5 * SECOND);
    }
    expect(statuses.length).toBeGreaterThan(2);
    expect(statuses.every((status) => status === 200)).toBe(true);
    const during = s.sentAt.slice(before);
    expect(during.length).toBeGreaterThan(5);
    expect(during.length).toBeLessThanOrEqual(20);
    const gaps = during.slice(1).map((time, i) => time - (during[i] ?? 0));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(5 * SECOND); // minInterval: retries are not scheduled renewals
    await s.front.up();
    const backAt = s.clock.now();
    const lastGap = gaps.at(-1) ?? 0;
    while (s.sidecar.manager('fleet')?.current() === undefined && s.clock.now() - backAt <= 2 * lastGap + 6 * SECOND)
      await s.advance(SECOND);
    expect(s.sidecar.manager('fleet')?.current()).toBeDefined();
    expect((await fetch(`${s.sidecar.dataUrl()}/x`)).status).toBe(200);
  });

  it('T5: bad credentials: unready with the reason, at most one login a minute, recovered when the secret file is fixed (no restart)', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = harness.tempDir('bs-cred-');
    const file = join(dir, 'password');
    writeFileSync(file, 'wrong-password\n');
    const s = await setup({ passwordFile: file });
    await s.advance(10 * MINUTE);
    const ready = await fetch(`${s.sidecar.adminUrl()}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/login rejected/);
    const status = (await (await fetch(`${s.sidecar.adminUrl()}/status`)).json()) as {
      accounts: { fleet: { state: string; lastError: { message: string } } };
    };
    expect(status.accounts.fleet.state).toBe('rejected');
    const gaps = s.sentAt.slice(1).map((time, i) => time - (s.sentAt[i] ?? 0));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(MINUTE);
    expect(s.sentAt.length).toBeLessThanOrEqual(11);
    expect(s.log.lines().filter((line) => String(line.msg).startsWith('account unready'))).toHaveLength(1);
    // The operator fixes the mounted secret; the next login reads it again.
    writeFileSync(file, `${s.password}\n`);
    await s.advance(5 * MINUTE);
    expect((await fetch(`${s.sidecar.adminUrl()}/readyz`)).status).toBe(200);
    expect((await fetch(`${s.sidecar.dataUrl()}/x`)).status).toBe(200);
  });
});

/** A second sidecar (real clock) on the same token server, for upstreams or settings of its own. */
async function extraSidecar(
  s: Setup,
  account: Record<string, unknown>,
  top: Record<string, unknown> = {},
): Promise<Sidecar> {
  return harness.sidecar(
    {
      listen: { port: 0 },
      admin: { port: 0 },
      ...top,
      accounts: {
        extra: {
          default: true,
          auth: { flow: 'session', loginUrl: s.front.url('/auth/login'), username: 'u', password: '${PW}' },
          ...account,
        },
      },
    },
    { env: { PW: s.password } },
  );
}

/** A sidecar whose upstream resets every connection as soon as request bytes arrive. */
async function sidecarBeforeResettingUpstream() {
  const s = await setup();
  const { createServer } = await import('node:net');
  const resetter = createServer((socket) => socket.on('data', () => socket.resetAndDestroy()));
  await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
  harness.defer(() => new Promise<void>((resolve) => resetter.close(() => resolve())));
  const port = (resetter.address() as { port: number }).port;
  return extraSidecar(s, { upstream: `http://127.0.0.1:${port}` });
}

describe('timeouts and aborts', () => {
  it('an upstream that does not answer within timeouts.response gives 504 upstream_timeout', async () => {
    const s = await setup({ account: { timeouts: { response: '200ms' } } });
    s.upstream.hold = new Promise(() => undefined);
    const answer = await fetch(`${s.sidecar.dataUrl()}/slow`);
    expect(answer.status).toBe(504);
    expect(await answer.json()).toMatchObject({ error: 'upstream_timeout', account: 'fleet' });
  });

  it('an upstream that resets the connection gives 502 upstream_unreachable', async () => {
    const other = await sidecarBeforeResettingUpstream();
    const reset = await fetch(`${other.dataUrl()}/x`);
    expect(reset.status).toBe(502);
    expect(await reset.json()).toMatchObject({ error: 'upstream_unreachable', account: 'extra' });
  });

  it('F5: an upstream that resets the connection while the request body is still arriving: the client gets its 502, not a cut connection', async () => {
    const other = await sidecarBeforeResettingUpstream();
    // The client has sent the head and a first part of the body; the rest never comes.
    const answer = await new Promise<string>((resolve) => {
      let received = '';
      const socket = connect(Number(new URL(other.dataUrl()).port), '127.0.0.1', () =>
        socket.write('POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n0123456789'),
      );
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (received.includes('}')) resolve(received);
      });
      socket.on('close', () => resolve(received));
      socket.on('error', () => undefined);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 502 /);
    expect(answer).toContain('"error":"upstream_unreachable"');
  });

  it('a stalled client upload is cut after clientIdleTimeout and its upstream request is aborted', async () => {
    const s = await setup();
    const sidecar = await extraSidecar(s, { upstream: s.upstream.url }, { clientIdleTimeout: '200ms' });
    const { port } = new URL(sidecar.dataUrl());
    const closed = await new Promise<boolean>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1', () =>
        socket.write('POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000\r\n\r\n0123456789'),
      );
      socket.on('close', () => resolve(true));
      socket.on('error', () => undefined);
    });
    expect(closed).toBe(true);
    expect(s.upstream.requests).toHaveLength(0);
  });
});

describe('§2 commands', () => {
  it('§2: stopping drains promptly: once the last in-flight answer is sent, its keep-alive socket is closed (no wait for shutdownTimeout)', async () => {
    const s = await setup();
    const sidecar = await extraSidecar(s, { upstream: s.upstream.url }, { shutdownTimeout: '1h' });
    let release: () => void = () => undefined;
    s.upstream.hold = new Promise((resolve) => (release = resolve));
    const answer = fetch(`${sidecar.dataUrl()}/slow`);
    await vi.waitFor(() => expect(s.upstream.requests).toHaveLength(1));
    const stopped = sidecar.stop();
    release();
    const response = await answer;
    expect(response.status).toBe(200);
    expect(response.headers.get('connection')).not.toBe('keep-alive');
    await stopped; // would hang for the hour if the idle keep-alive socket were kept
  });
});

describe('F5 errors the sidecar produces', () => {
  it('F5: a request Node cannot parse gets the JSON bad_request error', async () => {
    const s = await setup();
    const { rawRequest } = await import('../helpers/recording-upstream.js');
    const answer = await rawRequest(s.sidecar.dataUrl(), 'THIS IS NOT HTTP\r\n\r\n');
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'bad_request' });
  });
});

describe('§7 metrics', () => {
  it('§7: a client that goes away before the answer is counted as code 499, and its upstream request is aborted', async () => {
    const s = await setup();
    s.upstream.hold = new Promise(() => undefined);
    const controller = new AbortController();
    const pending = fetch(`${s.sidecar.dataUrl()}/gone`, { signal: controller.signal }).catch(() => 'aborted');
    await vi.waitFor(() => expect(s.upstream.requests).toHaveLength(1));
    controller.abort();
    expect(await pending).toBe('aborted');
    await vi.waitFor(async () =>
      expect(metricSum(await s.metrics(), METRIC_NAMES.proxyRequests, 'code="499"')).toBe(1),
    );
  });
});

describe('F4 upstream pools and TLS', () => {
  it('F4: an idempotent request that meets a pooled connection the upstream closed is sent once more on a fresh one; a POST is not', async () => {
    const s = await setup();
    const { createServer } = await import('node:net');
    let served = 0;
    // Each connection answers its first request (keep-alive) and drops the second unanswered.
    const upstream = createServer((socket) => {
      let seen = 0;
      socket.on('data', (chunk: Buffer) => {
        for (const _ of chunk.toString('latin1').matchAll(/ HTTP\/1\.1\r\n/g)) {
          seen += 1;
          if (seen === 1) {
            served += 1;
            socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
          } else socket.destroy();
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    harness.defer(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    const sidecar = await extraSidecar(s, { upstream: upstreamUrl });
    expect((await fetch(`${sidecar.dataUrl()}/one`)).status).toBe(200);
    expect((await fetch(`${sidecar.dataUrl()}/two`)).status).toBe(200);
    expect(served).toBe(2);
    // A second sidecar (a fresh pool): its POST meets the one kept connection, now dead, and is not resent.
    const other = await extraSidecar(s, { upstream: upstreamUrl });
    expect((await fetch(`${other.dataUrl()}/one`)).status).toBe(200);
    expect(served).toBe(3);
    expect((await fetch(`${other.dataUrl()}/post`, { method: 'POST', body: 'x' })).status).toBe(502);
    expect(served).toBe(3);
  });
});

/** A raw upstream on a free port: `onRequest` writes what it likes to each connection's socket. */
async function rawUpstream(
  onRequest: (socket: Socket) => void,
): Promise<{ url: string; closed: () => number; sockets: Socket[] }> {
  let closed = 0;
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => (closed += 1));
    socket.once('data', () => onRequest(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  harness.defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, closed: () => closed, sockets };
}

describe('F2 streaming with backpressure', () => {
  it.each([
    ['103 Early Hints', 'HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n'],
    ['102 Processing', 'HTTP/1.1 102 Processing\r\n\r\n'],
  ])(
    'F2: an interim %s before the answer is not taken for it: the client gets the final answer',
    async (_name, interim) => {
      const s = await setup();
      const upstream = await rawUpstream((socket) =>
        socket.write(`${interim}HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello`),
      );
      const sidecar = await extraSidecar(s, { upstream: upstream.url });
      const answer = await fetch(`${sidecar.dataUrl()}/x`);
      expect(answer.status).toBe(200);
      expect(await answer.text()).toBe('hello');
    },
  );

  it('F2: a reason phrase Node refuses to write is replaced by the standard one; status and body pass', async () => {
    const s = await setup();
    const upstream = await rawUpstream((socket) =>
      socket.write('HTTP/1.1 200 O\x7fK\r\ncontent-length: 5\r\n\r\nhello'),
    );
    const sidecar = await extraSidecar(s, { upstream: upstream.url });
    const answer = await fetch(`${sidecar.dataUrl()}/x`);
    expect(answer.status).toBe(200);
    expect(answer.statusText).toBe('OK');
    expect(await answer.text()).toBe('hello');
  });
});

describe('T8 upstream rejection and replay', () => {
  it('T8/§7: a client that leaves while a 401 is held for a replay is a 499, and no replay is counted', async () => {
    const s = await setup();
    // A 401 whose body never finishes: the sidecar holds it while it asks for a new token.
    const upstream = await rawUpstream((socket) =>
      socket.write('HTTP/1.1 401 Unauthorized\r\ncontent-length: 100\r\n\r\n0123456789'),
    );
    const sidecar = await extraSidecar(s, { upstream: upstream.url });
    const metrics = async () => (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
    const controller = new AbortController();
    const pending = fetch(`${sidecar.dataUrl()}/x`, { signal: controller.signal }).catch(() => 'aborted');
    await vi.waitFor(async () =>
      expect(metricSum(await metrics(), METRIC_NAMES.upstreamRejections, 'code="401"')).toBe(1),
    );
    controller.abort();
    expect(await pending).toBe('aborted');
    // The upstream connection closes once the sidecar has dropped the held answer.
    await vi.waitFor(() => expect(upstream.closed()).toBe(1));
    const text = await metrics();
    expect(metricSum(text, METRIC_NAMES.proxyRequests, 'code="499"')).toBe(1);
    expect(metricSum(text, METRIC_NAMES.replays)).toBe(0);
  });

  it('T8/T6: a 401 whose body is still arriving when the guard refuses a new token is passed through whole; the process lives on', async () => {
    const s = await setup();
    const upstream = await rawUpstream((socket) =>
      socket.write('HTTP/1.1 401 Unauthorized\r\ncontent-length: 20\r\n\r\n0123456789'),
    );
    // Just after its startup login, the loop guard (minInterval 30 s) holds any refresh longer than waitForToken.
    const sidecar = await extraSidecar(s, { upstream: upstream.url, refresh: { minInterval: '30s' } });
    const metrics = async () => (await fetch(`${sidecar.adminUrl()}/metrics`)).text();
    const pending = fetch(`${sidecar.dataUrl()}/x`);
    await vi.waitFor(async () =>
      expect(metricSum(await metrics(), METRIC_NAMES.upstreamRejections, 'code="401"')).toBe(1),
    );
    upstream.sockets[0]?.write('abcdefghij');
    const answer = await pending;
    expect(answer.status).toBe(401);
    expect(await answer.text()).toBe('0123456789abcdefghij');
    expect(metricSum(await metrics(), METRIC_NAMES.replays, 'outcome="no_token"')).toBe(1);
  });
});

describe('P1/P4 fresh tokens rejected: the account is degraded, still ready', () => {
  /** One client request while the fake clock moves on a second at a time until it is answered. */
  async function requestWhileTimePasses(s: Setup): Promise<number> {
    let answered: number | undefined;
    const before = s.upstream.requests.length;
    const pending = fetch(`${s.sidecar.dataUrl()}/x`).then((answer) => (answered = answer.status));
    // The clock stands still until the request reached the upstream.
    await vi.waitFor(() => expect(s.upstream.requests.length).toBeGreaterThan(before));
    while (answered === undefined) await s.advance(SECOND);
    return pending;
  }

  it('P4: an upstream answering 403 to fresh tokens too: /status degraded with the reason, /readyz 200 with warnings, the state gauge; an accepted answer clears it', async () => {
    const s = await setup({ lifetimeSeconds: 3600 });
    s.upstream.decide = () => 403;
    expect(await requestWhileTimePasses(s)).toBe(403);
    await s.advance(SECOND);
    const status = (await (await fetch(`${s.sidecar.adminUrl()}/status?format=json`)).json()) as {
      accounts: { fleet: { state: string; ready: boolean; reasons: string[] } };
    };
    expect(status.accounts.fleet).toMatchObject({
      state: 'degraded',
      ready: true,
      reasons: ['upstream rejects fresh tokens'],
    });
    const ready = await fetch(`${s.sidecar.adminUrl()}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      ready: true,
      reasons: {},
      warnings: { fleet: ['upstream rejects fresh tokens'] },
    });
    const metrics = await s.metrics();
    expect(metricSum(metrics, METRIC_NAMES.accountState, 'state="degraded"')).toBe(1);
    expect(metricSum(metrics, METRIC_NAMES.accountState)).toBe(1);
    const html = await (await fetch(`${s.sidecar.adminUrl()}/status`, { headers: { accept: 'text/html' } })).text();
    expect(html).toContain('upstream rejects fresh tokens');
    expect(html).toContain('1 degraded');

    s.upstream.decide = () => 200;
    expect(await requestWhileTimePasses(s)).toBe(200);
    const after = (await (await fetch(`${s.sidecar.adminUrl()}/status?format=json`)).json()) as typeof status;
    expect(after.accounts.fleet).toMatchObject({ state: 'valid', reasons: [] });
    expect(metricSum(await s.metrics(), METRIC_NAMES.accountState, 'state="valid"')).toBe(1);
  });
});

describe('P2 credentials that change: the admin trigger', () => {
  it('P2: POST /accounts/NAME/refresh during a rejected-login backoff: deferred with the reason for the same password, started for a new one', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = harness.tempDir('bs-p2-');
    const file = join(dir, 'password');
    writeFileSync(file, 'wrong-password\n');
    const s = await setup({ passwordFile: file });
    await s.advance(20 * SECOND);
    const refresh = async () =>
      (await (await fetch(`${s.sidecar.adminUrl()}/accounts/fleet/refresh`, { method: 'POST' })).json()) as Record<
        string,
        unknown
      >;
    const deferred = await refresh();
    expect(deferred).toMatchObject({ result: 'deferred', reason: 'the same credentials were rejected' });
    expect(Date.parse(String(deferred.at)) - s.clock.now()).toBe(40 * SECOND);
    writeFileSync(file, `${s.password}\n`);
    expect(await refresh()).toMatchObject({ result: 'started' });
    await s.sidecar.settled();
    expect((await fetch(`${s.sidecar.adminUrl()}/readyz`)).status).toBe(200);
    expect(s.sentAt).toHaveLength(2);
  });
});
