import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { generatedSecret, useHarness } from '../helpers/harness.js';
import type { HostileTokenServer, RawAnswer } from '../helpers/fault-token-server.js';
import { sendRaw, WEBSOCKET_UPGRADE } from '../helpers/raw-client.js';
import type { RecordingUpstream } from '../helpers/recording-upstream.js';

/*
 * §9 R1, R2, R4 through the real CLI: a token endpoint that answers what real ones sometimes do.
 * Each test checks the process is alive afterwards and every client got an answer.
 */

let dir: string;
let upstream: RecordingUpstream;
let tokenServer: HostileTokenServer | undefined;
const harness = useHarness();

beforeEach(async () => {
  dir = harness.tempDir('bs-untrusted-');
  upstream = await harness.recordingUpstream();
  tokenServer = undefined;
});

type Dialect = 'session' | 'oauth2';

async function startSidecar(
  dialect: Dialect,
  answer: HostileTokenServer['answer'],
  options: { secret?: string; logFormat?: 'json' | 'pretty' } = {},
) {
  tokenServer = await harness.hostileTokenServer(answer);
  const secret = options.secret ?? generatedSecret('pw');
  writeFileSync(join(dir, 'secret'), `${secret}\n`, { mode: 0o600 });
  const auth =
    dialect === 'session'
      ? `flow: session\n      loginUrl: ${tokenServer.url('/auth/login')}\n      refreshUrl: ${tokenServer.url('/auth/refresh')}\n      username: fleet-user\n      passwordFile: ${join(dir, 'secret')}`
      : `flow: oauth2\n      tokenUrl: ${tokenServer.url('/token')}\n      clientId: my-app\n      clientSecretFile: ${join(dir, 'secret')}`;
  writeFileSync(
    join(dir, 'sidecar.yaml'),
    `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
accounts:
  acct:
    upstream: ${upstream.url}
    default: true
    refresh: { waitForToken: 2s }
    auth:
      ${auth}
`,
  );
  const cli = harness.spawnCli(['--config', join(dir, 'sidecar.yaml'), '--log-format', options.logFormat ?? 'json']);
  let data: string;
  let admin: string;
  if (options.logFormat === 'pretty') {
    const found = await cli.waitForStdout(/bearer-sidecar listening.*data=(\S+).*admin=(\S+)/);
    [data, admin] = [found[1] ?? '', found[2] ?? ''];
  } else {
    const line = await cli.waitForLog((entry) => entry.msg === 'bearer-sidecar listening');
    [data, admin] = [String(line.data), String(line.admin)];
  }
  return { cli, data, admin, secret };
}

/** Waits until the token server has had `count` requests and the sidecar has dealt with them. */
async function tokenRequests(count: number, admin: string): Promise<void> {
  for (;;) {
    const status = (await (await fetch(`${admin}/status`)).json()) as {
      accounts: Record<string, { state: string; tokenRequests: Record<string, Record<string, number>> }>;
    };
    const account = Object.values(status.accounts)[0];
    const counts = account?.tokenRequests ?? {};
    const total = Object.values(counts).reduce(
      (sum, byOutcome) => sum + Object.values(byOutcome).reduce((a, b) => a + b, 0),
      0,
    );
    // Counted when the answer came; its token is used once saved, when the request has ended.
    if (total >= count && account?.state !== 'refreshing') return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function tokenAnswer(dialect: Dialect, token: string, extra: Record<string, unknown> = {}): RawAnswer {
  const body =
    dialect === 'session'
      ? { success: true, token, tokenLifetime: 3600, refreshToken: 'ref-1', ...extra }
      : { access_token: token, token_type: 'Bearer', expires_in: 3600, ...extra };
  return { status: 200, body: JSON.stringify(body) };
}

async function expectAlive(admin: string): Promise<void> {
  expect((await fetch(`${admin}/healthz`)).status).toBe(200);
}

describe('R1 token values', () => {
  const unsafe: Array<[Dialect, string]> = [
    ['oauth2', 'tok-1\n'],
    ['session', 'tok-1\n'],
    ['session', 'abc\r\nX-Injected: evil'],
    ['oauth2', ' tok-1'],
    ['oauth2', 'tök-1'],
    ['session', 'tok\u00001'],
  ];
  it.each(unsafe)(
    'R1: a %s token %j is never used: not ready, 503 not 502, a WebSocket upgrade answered, the process alive',
    async (dialect, token) => {
      const { cli, data, admin } = await startSidecar(dialect, () => tokenAnswer(dialect, token));
      await tokenRequests(1, admin);
      const ready = await fetch(`${admin}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toContain('token not header-safe');
      const proxied = await fetch(`${data}/x`);
      expect(proxied.status).toBe(503);
      expect(((await proxied.json()) as { error: string }).error).toBe('token_unavailable');
      expect(await sendRaw(new URL(data).port, WEBSOCKET_UPGRADE, { untilHead: true })).toMatch(/^HTTP\/1\.1 503 /);
      await expectAlive(admin);
      expect(upstream.requests).toHaveLength(0);
      expect(cli.child.exitCode).toBeNull();
    },
  );

  it('R1: a refresh token that is not header-safe makes the answer unusable too (session)', async () => {
    const { admin } = await startSidecar('session', () =>
      tokenAnswer('session', 'tok-good', { refreshToken: 'ref\n' }),
    );
    await tokenRequests(1, admin);
    const ready = await fetch(`${admin}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('"refreshToken\\": token not header-safe');
  });
});

describe('R2 token responses', () => {
  it.each<Dialect>(['session', 'oauth2'])(
    'R2: a UTF-8 byte-order mark before the JSON body is ignored (%s)',
    async (dialect) => {
      const { data, admin } = await startSidecar(dialect, () => {
        const answer = tokenAnswer(dialect, 'tok-bom');
        return { ...answer, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(String(answer.body))]) };
      });
      await tokenRequests(1, admin);
      expect((await fetch(`${admin}/readyz`)).status).toBe(200);
      expect((await fetch(`${data}/x`)).status).toBe(200);
      expect(upstream.requests[0]?.headers.authorization).toBe('Bearer tok-bom');
    },
  );

  it('R2: a token response over 1 MiB is an error, and the process does not hold it', async () => {
    const { admin } = await startSidecar('oauth2', () => ({
      status: 200,
      body: JSON.stringify({ access_token: 'tok-big', token_type: 'Bearer', padding: 'x'.repeat(2 * 1024 * 1024) }),
    }));
    await tokenRequests(1, admin);
    const ready = await fetch(`${admin}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('response larger than 1048576 bytes');
    await expectAlive(admin);
  });

  it('R2: token_type "MAC" is an error naming the type; the token is never sent as Bearer', async () => {
    const { cli, data, admin } = await startSidecar('oauth2', () =>
      tokenAnswer('oauth2', 'tok-mac', { token_type: 'MAC' }),
    );
    await tokenRequests(1, admin);
    const ready = await fetch(`${admin}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('token_type \\"MAC\\" is not supported');
    expect((await fetch(`${data}/x`)).status).toBe(503);
    expect(upstream.requests).toHaveLength(0);
    await cli.waitForLog((line) => line.msg === 'token request: login failed' && String(line.reason).includes('"MAC"'));
  });

  it('R2: token_type "bearer" in any case is accepted', async () => {
    const { data, admin } = await startSidecar('oauth2', () =>
      tokenAnswer('oauth2', 'tok-lower', { token_type: 'bEaReR' }),
    );
    await tokenRequests(1, admin);
    expect((await fetch(`${data}/x`)).status).toBe(200);
  });

  it('R2: a 429 with Retry-After: 20 is waited out, and waiting clients are told Retry-After: 20', async () => {
    const { data, admin } = await startSidecar('oauth2', () => ({
      status: 429,
      headers: { 'retry-after': '20' },
      body: '{"error":"slow_down"}',
    }));
    await tokenRequests(1, admin);
    const proxied = await fetch(`${data}/x`);
    expect(proxied.status).toBe(503);
    expect(Number(proxied.headers.get('retry-after'))).toBeGreaterThanOrEqual(19);
    const status = (await (await fetch(`${admin}/status`)).json()) as { accounts: { acct: { nextRefreshAt: string } } };
    expect(Date.parse(status.accounts.acct.nextRefreshAt) - Date.now()).toBeGreaterThan(15_000);
  });
});

describe('R4 server-provided text', () => {
  it('R4: a login rejection that quotes the whole request body never shows the password: /readyz, /status JSON and HTML, the 503 body, the log', async () => {
    const { cli, data, admin, secret } = await startSidecar('session', (request) => ({
      status: 401,
      body: JSON.stringify({ success: false, message: `invalid credentials for ${request.body}` }),
    }));
    await tokenRequests(1, admin);
    const texts = [
      await (await fetch(`${admin}/readyz`)).text(),
      await (await fetch(`${admin}/status`)).text(),
      await (await fetch(`${admin}/status`, { headers: { accept: 'text/html' } })).text(),
      await (await fetch(`${data}/x`)).text(),
    ];
    await cli.waitForLog((line) => line.msg === 'token request: login rejected');
    for (const text of [...texts, cli.stdout(), cli.stderr()]) expect(text).not.toContain(secret);
    expect(texts[0]).toContain('[redacted]');
    expect(texts[3]).toContain('[redacted]');
    await expectAlive(admin);
  });

  it('R4: the same for a client secret quoted back form-encoded and as the Basic value (oauth2)', async () => {
    const secret = `${generatedSecret('cs')} +&=/`;
    const { cli, admin } = await startSidecar(
      'oauth2',
      (request) => ({
        status: 401,
        body: JSON.stringify({
          error: 'invalid_client',
          error_description: `bad ${request.headers.authorization} ${request.body}`,
        }),
      }),
      { secret },
    );
    await tokenRequests(1, admin);
    const texts = [await (await fetch(`${admin}/readyz`)).text(), await (await fetch(`${admin}/status`)).text()];
    await cli.waitForLog((line) => line.msg === 'token request: login rejected');
    const formEncoded = new URLSearchParams({ v: secret }).toString().slice(2);
    const basic = Buffer.from(`my-app:${formEncoded}`).toString('base64');
    expect(tokenServer?.requests[0]?.headers.authorization).toBe(`Basic ${basic}`);
    for (const text of [...texts, cli.stdout()]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(basic);
      expect(text).not.toContain(formEncoded);
    }
  });

  it('R4: a server message with a newline and terminal escapes cannot forge a log line or reach the terminal raw (pretty)', async () => {
    const { cli, admin } = await startSidecar(
      'session',
      () => ({
        status: 401,
        body: JSON.stringify({
          success: false,
          message: 'nope\n12:00:00.000 INFO  all good \u001b[2J\u001b]0;pwned\u0007\u009b31m',
        }),
      }),
      { logFormat: 'pretty' },
    );
    await tokenRequests(1, admin);
    for (;;) {
      if (cli.stdout().includes('login rejected')) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const out = cli.stdout();
    expect(out).not.toMatch(/^12:00:00\.000 INFO {2}all good/m);
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\u0007\u009b]|\u001b\[2J|\u001b\]0;/);
    expect(out).toContain('\\n12:00:00.000 INFO  all good');
  });

  it('R4: server text is cut to 200 characters', async () => {
    const { admin } = await startSidecar('oauth2', () => ({
      status: 400,
      body: JSON.stringify({ error: 'invalid_grant', error_description: 'x'.repeat(5000) }),
    }));
    await tokenRequests(1, admin);
    const reason = ((await (await fetch(`${admin}/readyz`)).json()) as { reasons: { acct: string } }).reasons.acct;
    expect(reason).toContain('x'.repeat(150));
    expect(reason).not.toContain('x'.repeat(201));
  });
});
