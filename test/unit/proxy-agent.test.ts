import { readFileSync } from 'node:fs';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EgressProxy } from '../../src/config/egress.js';
import { createProxyAgent } from '../../src/flows/proxy-agent.js';
import { closeServer } from '../../src/util/http-server.js';
import { makeTestCertificates, startMtlsUpstream, type TestCertificates } from '../helpers/test-certificates.js';

let certs: TestCertificates;
const cleanups: (() => unknown)[] = [];

beforeEach(() => {
  certs = makeTestCertificates();
  cleanups.push(() => certs.remove());
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An https upstream that demands a client certificate from the test CA and answers with its subject. */
async function mtlsUpstream(options: { close: boolean }): Promise<string> {
  const { url, server } = await startMtlsUpstream(certs, options);
  cleanups.push(() => closeServer(server, { force: true }));
  return url;
}

/** A bare CONNECT proxy: counts tunnels, pipes each to its target. */
async function connectProxy(): Promise<{ proxy: EgressProxy; tunnels: () => number }> {
  let tunnels = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    client.once('data', (head) => {
      const [, target] = /^CONNECT (\S+) /.exec(head.toString('latin1')) ?? [];
      if (target === undefined) return void client.destroy();
      tunnels += 1;
      const [host, port] = [
        target.slice(0, target.lastIndexOf(':')),
        Number(target.slice(target.lastIndexOf(':') + 1)),
      ];
      const upstream = connect(port, host, () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.once('close', () => upstream.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return { proxy: { url, source: 'HTTPS_PROXY' } as EgressProxy, tunnels: () => tunnels };
}

/** A client certificate whose every `current()` is counted (each is two statSync in the real one). */
function spyCertificate(): { current(): { cert: string; key: string }; checks: number; use(cn: string): void } {
  const read = (certFile: string, keyFile: string) => ({
    cert: readFileSync(certFile, 'utf8'),
    key: readFileSync(keyFile, 'utf8'),
  });
  let pair = read(certs.clientCertFile, certs.clientKeyFile);
  const spy = {
    checks: 0,
    current() {
      spy.checks += 1;
      return pair;
    },
    use(cn: string) {
      const issued = certs.issueClient(cn);
      pair = read(issued.certFile, issued.keyFile);
    },
  };
  return spy;
}

describe('E2 client certificate behind an egress proxy', () => {
  it('E2: requests on one kept-alive tunnel check the client certificate once, not once per request', async () => {
    const upstream = await mtlsUpstream({ close: false });
    const { proxy, tunnels } = await connectProxy();
    const certificate = spyCertificate();
    const agent = createProxyAgent(proxy, {
      tls: { ca: [certs.ca], rejectUnauthorized: true, clientCertificate: certificate },
      connectTimeoutMs: 5_000,
      pool: { connections: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 },
    });
    cleanups.push(() => agent.destroy());
    for (let i = 0; i < 5; i += 1) {
      const answer = await agent.request({ origin: upstream, path: `/${i}`, method: 'GET' });
      expect(await answer.body.text()).toBe('bearer-sidecar');
    }
    expect(tunnels()).toBe(1);
    expect(certificate.checks).toBeLessThanOrEqual(1);
  });

  it('E2: a rotated client certificate is presented by the next new tunnel', async () => {
    const upstream = await mtlsUpstream({ close: true });
    const { proxy, tunnels } = await connectProxy();
    const certificate = spyCertificate();
    const agent = createProxyAgent(proxy, {
      tls: { ca: [certs.ca], rejectUnauthorized: true, clientCertificate: certificate },
      connectTimeoutMs: 5_000,
    });
    cleanups.push(() => agent.destroy());
    const subject = async () => (await agent.request({ origin: upstream, path: '/', method: 'GET' })).body.text();
    expect(await subject()).toBe('bearer-sidecar');
    certificate.use('rotated');
    expect(await subject()).toBe('rotated');
    expect(tunnels()).toBe(2);
  });
});
