import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { dataServerOptions } from '../../src/proxy/client-limits.js';
import { metricSum, useHarness, type SessionHarness, type SessionHarnessOptions } from '../helpers/harness.js';
import { startHeldUpstream } from '../helpers/held-upstream.js';
import { sendRaw } from '../helpers/raw-client.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

const sessions = useHarness();

async function harness(options: SessionHarnessOptions): Promise<SessionHarness> {
  const h = await sessions.session(options);
  await h.sidecar.settled();
  return h;
}

const port = (url: string) => Number(new URL(url).port);

/** Resolves when the socket closes, with what the server sent before; a hang detector, not a timing assertion. */
function closed(socket: Socket, hangMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const timer = setTimeout(() => resolve(`${received}<still open>`), hangMs);
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
  });
}

describe('R9 data-plane limits', () => {
  it('R9: the data plane has no total-time limit on a request (Node cuts any request at 300 s by default)', () => {
    const options = dataServerOptions({ headersTimeoutMs: 20_000, maxConnections: 4096 });
    expect(options.requestTimeout).toBe(0);
    expect(options.headersTimeout).toBe(20_000);
    // Checked often enough that a slow head is cut near its deadline, not up to 30 s late.
    expect(options.connectionsCheckingInterval).toBe(1_000);
  });

  it('R9: a body that keeps flowing is never cut by a total-time limit, however long its head deadline has passed', async () => {
    const upstream = await startHeldUpstream();
    cleanups.push(() => upstream.close());
    const headersTimeoutMs = 100;
    const h = await harness({
      config: { limits: { headersTimeout: `${headersTimeoutMs}ms` } },
      account: { upstream: upstream.url },
    });
    const answer = new Promise<number>((resolve, reject) => {
      const req = request(`${h.sidecar.dataUrl()}/upload`, { method: 'PUT', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      // Small pieces, each written once the one before has left (no sleeps): the body flows on
      // for many times the head deadline and many runs of Node's connection checker.
      const started = performance.now();
      let sent = 0;
      const writeNext = () => {
        if (performance.now() - started > 10 * headersTimeoutMs) {
          req.end();
          return;
        }
        sent += 1024;
        req.write(Buffer.alloc(1024, 0x62), () => setImmediate(writeNext));
      };
      writeNext();
      req.once('finish', () => expect(sent).toBeGreaterThan(0));
    });
    await upstream.arrived(1);
    upstream.received[0]?.answer();
    expect(await answer).toBe(200);
    expect(upstream.received[0]?.bodyLength).toBeGreaterThan(0);
  });

  it('R9: a client whose request head is not complete within limits.headersTimeout is answered 400 and disconnected (slow-loris)', async () => {
    const h = await harness({ config: { limits: { headersTimeout: '200ms' } } });
    const socket = connect(port(h.sidecar.dataUrl()), '127.0.0.1');
    const result = closed(socket);
    // Part of a head, and never the blank line that ends it.
    socket.write('GET /api/ping HTTP/1.1\r\nhost: localhost\r\nx-slow: 1\r\n');
    const received = await result;
    expect(received).toMatch(/^HTTP\/1\.1 400 /);
    expect(received).toContain('"error":"bad_request"');
    expect(received).toContain('limits.headersTimeout');
  });

  it('R9: past limits.maxConnections a new client connection is closed at once, counted and logged; a freed place is taken again', async () => {
    const h = await harness({ config: { limits: { maxConnections: 3 } } });
    const url = h.sidecar.dataUrl();
    // Three keep-alive clients, each known to the server (it answered them).
    const held: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = connect(port(url), '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => {
        socket.once('data', () => resolve());
        socket.write('GET /api/ping HTTP/1.1\r\nhost: localhost\r\n\r\n');
      });
      held.push(socket);
    }
    const fourth = connect(port(url), '127.0.0.1');
    expect(await closed(fourth)).toBe('');
    const metrics = await (await fetch(`${h.sidecar.adminUrl()}/metrics`)).text();
    expect(metricSum(metrics, 'bearer_sidecar_client_connections_refused_total')).toBe(1);
    expect(h.log.text()).toContain('limits.maxConnections');
    // One is closed by the server (connection: close): a new client is served again.
    const left = closed(held[0] as Socket);
    held[0]?.write('GET /api/ping HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
    await left;
    const again = await sendRaw(port(url), 'GET /api/ping HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
    expect(again).toMatch(/^HTTP\/1\.1 \d{3} /);
    for (const socket of held) socket.destroy();
  });
});
