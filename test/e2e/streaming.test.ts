import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';

import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import { closeServer, listen, serverUrl } from '../../src/util/http-server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { sessionAuth, useHarness } from '../helpers/harness.js';
import { rawRequest } from '../helpers/recording-upstream.js';

const harness = useHarness();

interface StreamingUpstream {
  url: string;
  server: Server;
  upgrades: Array<{ url: string; headers: IncomingHttpHeaders }>;
  /** Resolves the next SSE event to send. */
  nextEvent: () => void;
}

/** An upstream with a WebSocket echo, an SSE stream sent one event per `nextEvent()`, and a hashing /upload. */
async function startStreamingUpstream(tokenServer: SessionTokenServer): Promise<StreamingUpstream> {
  let release: () => void = () => undefined;
  const waitForNext = () => new Promise<void>((resolve) => (release = resolve));
  const server = createServer((req, res) => {
    const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (!tokenServer.isValidToken(token)) {
      res.writeHead(401).end();
      return;
    }
    if (req.url?.endsWith('/events')) {
      void sendEvents(res, waitForNext);
      return;
    }
    if (req.url?.endsWith('/upload')) {
      const hash = createHash('sha256');
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        size += chunk.length;
      });
      req.on('end', () => res.end(JSON.stringify({ size, sha256: hash.digest('hex') })));
      return;
    }
    if (req.url?.endsWith('/download')) {
      const block = Buffer.alloc(64 * 1024, 7);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let left = 64 * 1024 * 1024;
      const pump = () => {
        while (left > 0) {
          left -= block.length;
          if (!res.write(block)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    res.end(JSON.stringify({ url: req.url, upgrade: req.headers.upgrade ?? null }));
  });
  const upgrades: StreamingUpstream['upgrades'] = [];
  const wss = new WebSocketServer({
    server,
    verifyClient: ({ req }: { req: { url?: string; headers: IncomingHttpHeaders } }) => {
      upgrades.push({ url: req.url ?? '', headers: req.headers });
      return tokenServer.isValidToken(String(req.headers.authorization ?? '').replace(/^Bearer /, ''));
    },
  });
  wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo:${String(data)}`)));
  await listen(server, { host: '127.0.0.1', port: 0 });
  harness.defer(() => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    return closeServer(server, { force: true });
  });
  return { url: serverUrl(server), server, upgrades, nextEvent: () => release() };
}

async function sendEvents(res: ServerResponse, waitForNext: () => Promise<void>): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (let i = 1; i <= 3; i++) {
    res.write(`data: event-${i}\n\n`);
    await waitForNext();
  }
  res.end();
}

async function setup(config: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const { tokenServer, password } = await harness.sessionTokenServer({ lifetimeSeconds: 3600, now: () => clock.now() });
  const upstream = await startStreamingUpstream(tokenServer);
  const sidecar = await harness.sidecar(
    {
      ...config,
      accounts: {
        crm: { upstream: `${upstream.url}/base`, route: { pathPrefix: '/crm' }, auth: sessionAuth(tokenServer) },
      },
    },
    { env: { PW: password }, deps: { clock } },
  );
  return { sidecar, upstream, tokenServer };
}

function openSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
    socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

describe('F2: streaming, server-sent events and WebSocket', () => {
  it('F2: a WebSocket upgrade is forwarded with the token injected, to the exact target path, and echoes', async () => {
    const { sidecar, upstream, tokenServer } = await setup();
    const ws = await openSocket(`${sidecar.dataUrl().replace('http', 'ws')}/crm//rooms/1?x=1`, {
      authorization: 'Bearer from-client',
      'x-sidecar-key': 'k',
    });
    harness.defer(() => ws.terminate());
    const reply = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
    ws.send('hello');
    expect(await reply).toBe('echo:hello');
    const seen = upstream.upgrades[0];
    expect(seen?.url).toBe('/base//rooms/1?x=1');
    expect(tokenServer.isValidToken(String(seen?.headers.authorization).slice(7))).toBe(true);
    expect(seen?.headers).not.toHaveProperty('x-sidecar-key');
    expect(seen?.headers.host).toBe(new URL(upstream.url).host);
  });

  it('F2: an upgrade with an Expect header still goes to the exact target path', async () => {
    const { sidecar, upstream } = await setup();
    const ws = await openSocket(`${sidecar.dataUrl().replace('http', 'ws')}/crm//evil/x`, { expect: '100-continue' });
    cleanup(ws);
    expect(upstream.upgrades[0]?.url).toBe('/base//evil/x');
  });

  it('F2/F3: WebSocket upgrades are refused by the same rules as HTTP (path, route, inbound)', async () => {
    const { sidecar, upstream } = await setup();
    const upgrade = (target: string) =>
      rawRequest(
        sidecar.dataUrl(),
        `GET ${target} HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
      );
    expect((await upgrade('/crm/%2e%2e/admin')).status).toBe(400);
    expect((await upgrade('/nowhere')).status).toBe(404);
    expect(upstream.upgrades).toHaveLength(0);
    const locked = await setup({ inbound: { allow: ['10.0.0.0/8'] } });
    await expect(openSocket(`${locked.sidecar.dataUrl().replace('http', 'ws')}/crm/x`)).rejects.toThrow(/403/);
  });

  it('an Upgrade other than WebSocket (h2c) is served as the plain request it also is', async () => {
    const { sidecar } = await setup();
    const answer = await rawRequest(
      sidecar.dataUrl(),
      'GET /crm/plain HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ url: '/base/plain', upgrade: null });
  });

  it('F2: server-sent events arrive one by one, each before the upstream sends the next', async () => {
    const { sidecar, upstream } = await setup();
    const response = await fetch(`${sidecar.dataUrl()}/crm/events`);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    for (let i = 1; i <= 3; i++) {
      let text = '';
      while (!text.includes(`event-${i}`)) text += decoder.decode((await reader.read()).value);
      // Event i arrived while the upstream is still waiting to send event i+1.
      upstream.nextEvent();
    }
    expect((await reader.read()).done).toBe(true);
  });

  it('F2: a 64 MiB download and a 32 MiB chunked upload pass through intact', async () => {
    const { sidecar } = await setup();
    const download = await fetch(`${sidecar.dataUrl()}/crm/download`);
    let size = 0;
    for await (const chunk of download.body as unknown as AsyncIterable<Uint8Array>) size += chunk.length;
    expect(size).toBe(64 * 1024 * 1024);

    const block = randomBytes(1024 * 1024);
    const expected = createHash('sha256');
    for (let i = 0; i < 32; i++) expected.update(block);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 32; i++) controller.enqueue(block);
        controller.close();
      },
    });
    const upload = await fetch(`${sidecar.dataUrl()}/crm/upload`, {
      method: 'POST',
      body,
      duplex: 'half',
    } as RequestInit);
    expect(await upload.json()).toEqual({ size: 32 * 1024 * 1024, sha256: expected.digest('hex') });
  });
});

function cleanup(ws: WebSocket): void {
  harness.defer(() => ws.terminate());
}
