import { request, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { EgressProxy } from '../../src/config/egress.js';
import { ReplayBudget } from '../../src/proxy/replay-budget.js';
import { sendWithUndici, type Transport } from '../../src/proxy/transport.js';
import type { ActiveToken } from '../../src/tokens/active-token.js';
import { activeToken, startDataPlane, type DataPlaneHarness } from '../helpers/data-plane.js';
import { FakeClock, flushIo } from '../helpers/fake-clock.js';
import { openFileDescriptors, startHeldUpstream, type HeldUpstream } from '../helpers/held-upstream.js';
import { sendRaw } from '../helpers/raw-client.js';
import { statusLines, websocketUpgrade } from '../helpers/raw-upstream.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function heldUpstream(): Promise<HeldUpstream> {
  const upstream = await startHeldUpstream();
  cleanups.push(() => upstream.close());
  return upstream;
}

async function plane(options: Parameters<typeof startDataPlane>[0]): Promise<DataPlaneHarness> {
  const harness = await startDataPlane(options);
  cleanups.push(() => harness.close());
  return harness;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request on its own connection (no client-side pool to queue it). */
function send(url: string, path: string, options: { method?: string; body?: Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: options.method ?? 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const port = (url: string) => Number(new URL(url).port);

describe('R9 data-plane limits: pipelining and the replay budget', () => {
  it('R9: pipelined requests on one client connection are forwarded one at a time, the next only after the answer before it was passed on', async () => {
    const upstream = await heldUpstream();
    let dispatched = 0;
    const counting: Transport = (call) => {
      dispatched += 1;
      return sendWithUndici(call);
    };
    const { url } = await plane({
      upstream: upstream.url,
      tokens: { current: () => activeToken('tok') },
      transport: counting,
    });
    const count = 20;
    const pipelined = Array.from({ length: count }, (_, i) =>
      i === count - 1
        ? `GET /r${i} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`
        : `GET /r${i} HTTP/1.1\r\nhost: localhost\r\n\r\n`,
    ).join('');
    const answers = sendRaw(port(url), pipelined, { silenceMs: 10_000 });
    for (let i = 0; i < count; i++) {
      await upstream.arrived(i + 1);
      await flushIo();
      // Only the request whose turn it is has left the sidecar; the rest wait on the client connection.
      expect(dispatched).toBe(i + 1);
      expect(upstream.received).toHaveLength(i + 1);
      upstream.received[i]?.answer();
    }
    const raw = await answers;
    expect(statusLines(raw)).toEqual(Array.from({ length: count }, () => 'HTTP/1.1 200 OK'));
    // In order: each answer names the request it belongs to.
    expect([...raw.matchAll(/"seen":"\/r(\d+)"/g)].map((match) => Number(match[1]))).toEqual(
      Array.from({ length: count }, (_, i) => i),
    );
  });

  it('R9: replay copies share limits.replayBudget: a body that does not fit keeps no copy, goes through, and its replay is skipped', async () => {
    const upstream = await heldUpstream();
    const budget = new ReplayBudget(100 * 1024);
    let token = activeToken('old-token', 1);
    const { url, replays } = await plane({
      upstream: upstream.url,
      tokens: {
        current: () => token,
        replacementFor: () => {
          token = activeToken('new-token', 2);
          return Promise.resolve(token);
        },
      },
      replayBudget: budget,
    });
    const body = Buffer.alloc(80 * 1024, 0x61);
    const first = send(url, '/a', { method: 'POST', body });
    const second = send(url, '/b', { method: 'POST', body });
    await upstream.arrived(2);
    // Both bodies went upstream whole; only one copy (80 KiB) fits in the 100 KiB budget.
    expect(upstream.received.map((r) => r.bodyLength)).toEqual([body.length, body.length]);
    expect(budget.inUse()).toBe(body.length);
    for (const held of upstream.received.slice(0, 2)) held.answer(401);
    await upstream.arrived(3);
    upstream.received[2]?.answer(200);
    const statuses = [(await first).status, (await second).status].sort();
    expect(statuses).toEqual([200, 401]);
    expect([...replays].sort()).toEqual(['skipped', 'success']);
    expect(upstream.received[2]?.authorization).toBe('Bearer new-token');
    // Every copy is given back once its exchange is over.
    expect(budget.inUse()).toBe(0);
  });
});

describe('R10 upstream pool per account', () => {
  it('R10: a request that finds every connection busy for timeouts.queue gets 503 upstream_busy with Retry-After: 1, and never reaches the upstream', async () => {
    const upstream = await heldUpstream();
    const clock = new FakeClock();
    const { url } = await plane({
      upstream: upstream.url,
      tokens: { current: () => activeToken('tok') },
      connections: 2,
      timeouts: { queueMs: 5_000 },
      clock,
    });
    const busy = [send(url, '/stream-1'), send(url, '/stream-2')];
    await upstream.arrived(2);
    const waiting = send(url, '/ping');
    await flushIo();
    await clock.advance(4_999);
    expect(upstream.received).toHaveLength(2);
    await clock.advance(1);
    const answer = await waiting;
    expect(answer.status).toBe(503);
    expect(answer.headers['retry-after']).toBe('1');
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'upstream_busy', account: 'crm' });
    expect(upstream.received).toHaveLength(2);
    expect(upstream.openConnections()).toBe(2);
    for (const held of upstream.received) held.answer();
    expect((await Promise.all(busy)).map((a) => a.status)).toEqual([200, 200]);
  });

  it('R10/T7: a queued request leaves with the token current when a connection frees, never the one it arrived with', async () => {
    const upstream = await heldUpstream();
    const clock = new FakeClock();
    let current: ActiveToken | undefined = activeToken('token-a', 1);
    let waitedFor = 0;
    const { url } = await plane({
      upstream: upstream.url,
      tokens: {
        current: () => current,
        waitForToken: () => {
          waitedFor += 1;
          current = activeToken('token-c', 3);
          return Promise.resolve(current);
        },
      },
      connections: 1,
      clock,
    });
    const first = send(url, '/first');
    await upstream.arrived(1);
    const second = send(url, '/second');
    const third = send(url, '/third');
    await flushIo();
    // While they queue, token A is replaced by B.
    current = activeToken('token-b', 2);
    upstream.received[0]?.answer();
    await upstream.arrived(2);
    expect(upstream.received[1]?.authorization).toBe('Bearer token-b');
    // Then B expires with no replacement yet: the next one waits for a token instead of sending B.
    current = undefined;
    upstream.received[1]?.answer();
    await upstream.arrived(3);
    expect(upstream.received[2]?.authorization).toBe('Bearer token-c');
    expect(waitedFor).toBe(1);
    upstream.received[2]?.answer();
    expect((await Promise.all([first, second, third])).map((a) => a.status)).toEqual([200, 200, 200]);
  });
});

describe('R11 WebSocket upgrades have bounds', () => {
  it.each([
    ['Content-Length: 20', 'content-length: 20\r\n'],
    ['Transfer-Encoding: chunked', 'transfer-encoding: chunked\r\n'],
  ])(
    'R11: a WebSocket upgrade carrying a body (%s) is refused with 400 bad_request; nothing reaches the upstream',
    async (_name, header) => {
      const upstream = await heldUpstream();
      const { url } = await plane({ upstream: upstream.url, tokens: { current: () => activeToken('tok') } });
      const raw = await sendRaw(port(url), websocketUpgrade().replace('\r\n\r\n', `\r\n${header}\r\n`), {
        silenceMs: 5_000,
      });
      expect(statusLines(raw)).toEqual(['HTTP/1.1 400 bad request']);
      expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'bad_request' });
      expect(upstream.upgrades).toBe(0);
      expect(upstream.openConnections()).toBe(0);
    },
  );

  it('R11: an upgrade the upstream never answers gets 504 upstream_timeout after timeouts.response, and its upstream socket is closed', async () => {
    const upstream = await heldUpstream();
    const clock = new FakeClock();
    const { url } = await plane({
      upstream: upstream.url,
      tokens: { current: () => activeToken('tok') },
      timeouts: { responseMs: 3_000 },
      clock,
    });
    const answer = sendRaw(port(url), websocketUpgrade(), { silenceMs: 5_000 });
    await upstream.upgraded(1);
    await clock.advance(2_999);
    expect(upstream.openConnections()).toBe(1);
    await clock.advance(1);
    const raw = await answer;
    expect(statusLines(raw)).toEqual(['HTTP/1.1 504 upstream timeout']);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'upstream_timeout' });
    expect(await upstream.allClosed()).toBe(true);
  });

  it('R11: 40 clients that leave while their upgrades wait for the upstream leave no socket open, upstream or here (fd figures)', async () => {
    const upstream = await heldUpstream();
    const { url } = await plane({ upstream: upstream.url, tokens: { current: () => activeToken('tok') } });
    const before = await openFileDescriptors();
    const clients = Array.from({ length: 40 }, () => {
      const socket = connect(port(url), '127.0.0.1', () => socket.write(websocketUpgrade()));
      socket.on('error', () => undefined);
      return socket;
    });
    await upstream.upgraded(40);
    expect(upstream.openConnections()).toBe(40);
    const during = await openFileDescriptors();
    // The clients leave politely (FIN), as a browser tab that is closed does.
    const gone = clients.map((socket) => new Promise((resolve) => socket.once('close', resolve)));
    for (const socket of clients) socket.end();
    await Promise.all(gone);
    expect(await upstream.allClosed()).toBe(true);
    const after = await openFileDescriptors();
    // Figures for the report: 40 clients hold ~120 fds (client, sidecar side, upstream side) while waiting.
    console.info(`R11 fds: before ${before}, while waiting ${during}, after the clients left ${after}`);
    expect(after).toBeLessThanOrEqual(before + 2);
  });
});

/**
 * An egress proxy that takes connections and never finishes what it was asked: `silent` never
 * answers the CONNECT; `nowhere` answers 200 and then passes nothing on (a TLS handshake inside
 * the tunnel waits forever). It counts the connections the sidecar keeps open to it.
 */
async function stuckProxy(mode: 'silent' | 'nowhere'): Promise<{
  proxy: EgressProxy;
  connects: () => number;
  open: () => number;
  allClosed: () => Promise<boolean>;
}> {
  const sockets = new Set<Socket>();
  let connects = 0;
  const closed: Array<() => void> = [];
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      sockets.delete(socket);
      if (sockets.size === 0) closed.splice(0).forEach((wake) => wake());
    });
    socket.once('data', (head: Buffer) => {
      if (!head.toString('latin1').startsWith('CONNECT ')) return;
      connects += 1;
      if (mode === 'nowhere') socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
      // Reads on, so the sidecar's FIN is seen and answered with one.
      socket.on('end', () => socket.end());
      socket.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return {
    proxy: { url, authorization: undefined, source: 'HTTPS_PROXY' },
    connects: () => connects,
    open: () => sockets.size,
    allClosed: () => {
      // A hang detector, not a timing assertion: what is still open after it is a leak.
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 5_000)));
      const done =
        sockets.size === 0
          ? Promise.resolve(true)
          : new Promise<boolean>((resolve) => closed.push(() => resolve(true)));
      return Promise.race([done, hung]).finally(() => clearTimeout(timer));
    },
  };
}

describe('E6 WebSocket upgrades through an egress proxy: bounded', () => {
  it.each([
    ['a CONNECT the proxy never answers', 'silent', 'http://127.0.0.1:9'],
    ['a TLS handshake inside the tunnel that never finishes', 'nowhere', 'https://127.0.0.1:9'],
  ] as const)(
    'E6: %s gets 504 upstream_timeout after timeouts.connect, and every socket to the proxy is closed',
    async (_what, mode, upstream) => {
      const stuck = await stuckProxy(mode);
      const clock = new FakeClock();
      const { url } = await plane({
        upstream,
        tokens: { current: () => activeToken('tok') },
        timeouts: { connectMs: 2_000, responseMs: 3_000 },
        clock,
        proxy: stuck.proxy,
      });
      const client = connect(port(url), '127.0.0.1', () => client.write(websocketUpgrade()));
      client.on('error', () => undefined);
      let raw = '';
      client.on('data', (chunk: Buffer) => (raw += chunk.toString('latin1')));
      const clientClosed = new Promise((resolve) => client.once('close', resolve));
      while (stuck.connects() < 1) await flushIo();
      await clock.advance(1_999);
      expect(stuck.open()).toBe(1);
      await clock.advance(1);
      await clientClosed;
      expect(statusLines(raw)).toEqual(['HTTP/1.1 504 upstream timeout']);
      // The tunnel attempt ends with the answer: nothing stays open to the proxy.
      expect(await stuck.allClosed()).toBe(true);
    },
  );

  it('E6: a client that leaves while its tunnel waits for the proxy takes the tunnel attempt with it', async () => {
    const stuck = await stuckProxy('silent');
    const { url } = await plane({
      upstream: 'http://127.0.0.1:9',
      tokens: { current: () => activeToken('tok') },
      proxy: stuck.proxy,
    });
    const client = connect(port(url), '127.0.0.1', () => client.write(websocketUpgrade()));
    client.on('error', () => undefined);
    while (stuck.connects() < 1) await flushIo();
    client.destroy();
    expect(await stuck.allClosed()).toBe(true);
  });
});
