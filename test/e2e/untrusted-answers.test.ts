import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import { closeServer, listen, serverUrl } from '../../src/util/http-server.js';
import { generatedSecret, metricSum, useHarness, type LaunchedCli } from '../helpers/harness.js';
import {
  getAndClose,
  rawExchange,
  startRawUpstream,
  statusLines,
  websocketUpgrade,
  type RawAnswer,
  type RawRequestHead,
} from '../helpers/raw-upstream.js';

/*
 * Issue 16 through the real CLI: after each hostile input the process is still alive (/healthz
 * 200, no exit) and every client got an answer.
 */

const harness = useHarness();

/** Starts the built CLI with one default account (session flow) in front of `upstream`. */
async function startCli(options: {
  upstream: string;
  loginUrl: string;
  refreshUrl: string;
  password: string;
  refresh?: Record<string, unknown>;
}): Promise<LaunchedCli> {
  const dir = harness.tempDir('bs-untrusted-');
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    accounts: {
      crm: {
        upstream: options.upstream,
        default: true,
        refresh: options.refresh ?? {},
        auth: {
          flow: 'session',
          loginUrl: options.loginUrl,
          refreshUrl: options.refreshUrl,
          username: 'u',
          password: '${PW}',
        },
      },
    },
  };
  writeFileSync(join(dir, 'sidecar.json'), JSON.stringify(config));
  return harness.launchCli(['--config', join(dir, 'sidecar.json')], { env: { PW: options.password } });
}

async function rawUpstream(answer: (request: RawRequestHead, index: number) => RawAnswer) {
  const upstream = await startRawUpstream(answer);
  harness.defer(() => upstream.close());
  return upstream;
}

/** A real session-dialect token server (tokens that are fine). */
async function goodTokenServer() {
  const { tokenServer, password } = await harness.sessionTokenServer();
  return { loginUrl: tokenServer.loginUrl, refreshUrl: tokenServer.refreshUrl, password };
}

/** The process is alive: it has not exited and its admin port answers /healthz. */
async function expectAlive(running: LaunchedCli): Promise<void> {
  expect(running.cli.child.exitCode).toBeNull();
  expect((await fetch(`${running.admin}/healthz`)).status).toBe(200);
}

const OK_ANSWER = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

describe('R1 header-safe token values', () => {
  it('R1: a token that is not header-safe, with WebSocket upgrades and requests (cold start and after), never crashes the process nor reaches the upstream', async () => {
    // The marker tells the token apart in every output; the CR LF would inject a header if written.
    const token = `tok-${randomBytes(6).toString('hex')}\r\nX-Injected: evil`;
    const tokenServer: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            success: true,
            token,
            refreshToken: `ref-${randomBytes(6).toString('hex')}`,
            tokenLifetime: 600,
          }),
        ),
      );
    });
    await listen(tokenServer, { host: '127.0.0.1', port: 0 });
    harness.defer(() => closeServer(tokenServer, { force: true }));
    const upstream = await rawUpstream(() => OK_ANSWER);
    const running = await startCli({
      upstream: upstream.url,
      loginUrl: `${serverUrl(tokenServer)}/login`,
      refreshUrl: `${serverUrl(tokenServer)}/refresh`,
      password: generatedSecret('pw'),
      // If the parsers refuse the token (as they should), clients wait this long for a valid one.
      refresh: { waitForToken: '1s' },
    });
    // Sent at once: these may wait for the first token (cold start).
    const cold = await Promise.all([
      rawExchange(running.data, websocketUpgrade()),
      rawExchange(running.data, getAndClose()),
    ]);
    await running.cli.waitForLog((entry) =>
      /^token request: login (succeeded|failed|rejected)/.test(String(entry.msg)),
    );
    const after = await Promise.all([
      rawExchange(running.data, websocketUpgrade()),
      rawExchange(running.data, getAndClose()),
    ]);
    for (const raw of [...cold, ...after]) {
      expect(statusLines(raw)).toHaveLength(1);
      expect(statusLines(raw)[0]).toMatch(/^HTTP\/1\.1 503 /);
      expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({
        error: 'token_unavailable',
        account: 'crm',
      });
      expect(raw).not.toContain(token.slice(0, 16));
    }
    expect(upstream.requests).toHaveLength(0);
    await expectAlive(running);
    expect(running.cli.stdout() + running.cli.stderr()).not.toContain(token.slice(0, 16));
  });
});

describe('R3 upstream answers as sent', () => {
  it('R3: header values and a reason phrase with bytes outside ASCII reach the client byte for byte, sized or streamed', async () => {
    const resume = 'r\xc3\xa9sum\xc3\xa9';
    const headers = `content-disposition: attachment; filename="${resume}.pdf"\r\nset-cookie: a=${resume}\r\nset-cookie: b=\xe9\r\nlocation: /docs/${resume}`;
    const upstream = await rawUpstream((_request, index) =>
      index === 0
        ? `HTTP/1.1 200 Tr\xc3\xa8s bien\r\n${headers}\r\ncontent-length: 2\r\n\r\nok`
        : `HTTP/1.1 200 OK\r\n${headers}\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n`,
    );
    const running = await startCli({ upstream: upstream.url, ...(await goodTokenServer()) });
    await running.cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    const raw = await rawExchange(
      running.data,
      `GET /sized HTTP/1.1\r\nhost: localhost\r\n\r\n${getAndClose('/streamed')}`,
    );
    expect(statusLines(raw)).toEqual(['HTTP/1.1 200 Tr\xc3\xa8s bien', 'HTTP/1.1 200 OK']);
    const streamed = raw.slice(raw.indexOf('HTTP/1.1 200 OK'));
    for (const answer of [raw.slice(0, raw.indexOf('HTTP/1.1 200 OK')), streamed]) {
      for (const line of headers.split('\r\n')) expect(answer).toContain(`${line}\r\n`);
    }
    await expectAlive(running);
  });

  it('R3: a 304 or 204 with Content-Length and an answer to HEAD pass back with no body; the keep-alive connection goes on; each is counted as the client got it', async () => {
    const answers = [
      'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 1234\r\n\r\n',
      'HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n',
      OK_ANSWER,
    ];
    const upstream = await rawUpstream((_request, index) => answers[index] ?? OK_ANSWER);
    const running = await startCli({ upstream: upstream.url, ...(await goodTokenServer()) });
    await running.cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    const raw = await rawExchange(
      running.data,
      `GET /cached HTTP/1.1\r\nhost: localhost\r\nif-none-match: "v1"\r\n\r\nDELETE /item HTTP/1.1\r\nhost: localhost\r\n\r\nHEAD /file HTTP/1.1\r\nhost: localhost\r\n\r\n${getAndClose('/last')}`,
    );
    expect(statusLines(raw)).toEqual([
      'HTTP/1.1 304 Not Modified',
      'HTTP/1.1 204 No Content',
      'HTTP/1.1 200 OK',
      'HTTP/1.1 200 OK',
    ]);
    expect(raw).toMatch(
      /^HTTP\/1\.1 304 Not Modified\r\n(?:.+\r\n)*content-length: 1234\r\n(?:.+\r\n)*\r\nHTTP\/1\.1 204/,
    );
    expect(raw.endsWith('\r\n\r\nok')).toBe(true);
    // One client connection for the four; each reached the upstream.
    expect(upstream.requests.map((request) => request.text.split(' ', 2).join(' '))).toEqual([
      'GET /cached',
      'DELETE /item',
      'HEAD /file',
      'GET /last',
    ]);
    const metrics = await (await fetch(`${running.admin}/metrics`)).text();
    expect(metricSum(metrics, METRIC_NAMES.proxyRequests, 'code="304"')).toBe(1);
    expect(metricSum(metrics, METRIC_NAMES.proxyRequests, 'code="204"')).toBe(1);
    expect(metricSum(metrics, METRIC_NAMES.proxyRequests, 'code="200"')).toBe(2);
    await expectAlive(running);
  });
});
