import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSessionTokenServer, type SessionTokenServer } from '../../src/demo/session-token-server.js';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.js';
import { generatedSecret, useHarness } from '../helpers/harness.js';
import { rawGet } from '../helpers/recording-upstream.js';
import { runCli, spawnCli, type RunningCli } from '../helpers/spawn-cli.js';

let dir: string;
const children: RunningCli[] = [];
const closers: Array<() => Promise<void>> = [];
const harness = useHarness();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bs-first-hour-'));
});

afterEach(async () => {
  for (const cli of children.splice(0)) {
    if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
    await cli.exited;
  }
  await Promise.all(closers.splice(0).map((close) => close()));
  rmSync(dir, { recursive: true, force: true });
});

/** An oauth2 token endpoint that issues a token only to client `app` with `secret` (HTTP Basic). */
async function oauth2TokenServer(secret: string): Promise<string> {
  const expected = `Basic ${Buffer.from(`app:${secret}`).toString('base64')}`;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const ok = req.headers.authorization === expected;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(
        ok ? JSON.stringify({ access_token: generatedSecret('at'), expires_in: 60 }) : '{"error":"invalid_client"}',
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
}

async function sessionServers(): Promise<{
  tokenServer: SessionTokenServer;
  upstream: DemoUpstream;
  password: string;
}> {
  const password = generatedSecret('pw');
  const tokenServer = await startSessionTokenServer({ username: 'u', password, lifetimeSeconds: 60 });
  const upstream = await startDemoUpstream({ isValidToken: (token) => tokenServer.isValidToken(token) });
  closers.push(
    () => tokenServer.close(),
    () => upstream.close(),
  );
  return { tokenServer, upstream, password };
}

describe('§2 first run from the command line', () => {
  it('§2: --client-secret on the command line is refused with the safe ways to give it, never echoing it', async () => {
    const secret = generatedSecret('cs');
    const result = await runCli(['--upstream', 'http://127.0.0.1:1', '--client-secret', secret]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      '--client-secret: a secret on the command line is visible to every user of this machine (ps); use --client-secret-file FILE or the environment variable BEARER_SIDECAR_CLIENT_SECRET',
    );
    expect(result.stderr).not.toContain(secret);
  });

  it('§2: a bad --log-level names the flag and its environment twin', async () => {
    const result = await runCli(['--upstream', 'http://127.0.0.1:1'], { env: { BEARER_SIDECAR_LOG_LEVEL: 'loud' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      '--log-level (BEARER_SIDECAR_LOG_LEVEL): "loud" is not a level (fatal|error|warn|info|debug|trace|silent)',
    );
  });

  it('R6: BEARER_SIDECAR_CLIENT_SECRET in .env is the client secret of quick mode', async () => {
    const secret = generatedSecret('cs');
    const tokenUrl = await oauth2TokenServer(secret);
    writeFileSync(join(dir, '.env'), `BEARER_SIDECAR_CLIENT_SECRET=${secret}\n`, { mode: 0o600 });
    const args = ['check', '--json', '--upstream', 'http://127.0.0.1:1', '--token-url', tokenUrl, '--client-id', 'app'];
    const result = await runCli(args, { cwd: dir });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).not.toContain(secret);
  });

  it('§3: in quick mode a relative --client-secret-file is relative to the working directory', async () => {
    const secret = generatedSecret('cs');
    const tokenUrl = await oauth2TokenServer(secret);
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'client-secret'), `${secret}\n`, { mode: 0o600 });
    const args = ['check', '--upstream', 'http://127.0.0.1:1', '--token-url', tokenUrl, '--client-id', 'app'];
    const result = await runCli([...args, '--client-secret-file', 'secrets/client-secret'], { cwd: dir });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('§2: an unknown BEARER_SIDECAR_* variable (environment or .env) exits 2 with the nearest name', async () => {
    writeFileSync(join(dir, '.env'), 'BEARER_SIDECAR_TOKEN_UR=http://127.0.0.1:1/token\n');
    const result = await runCli(['--client-id', 'app'], {
      cwd: dir,
      env: { BEARER_SIDECAR_UPSTREM: 'http://127.0.0.1:1' },
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      [
        'bearer-sidecar: bad configuration:',
        '  BEARER_SIDECAR_TOKEN_UR: not a variable bearer-sidecar knows; did you mean BEARER_SIDECAR_TOKEN_URL?',
        '  BEARER_SIDECAR_UPSTREM: not a variable bearer-sidecar knows; did you mean BEARER_SIDECAR_UPSTREAM?',
        '  --upstream (BEARER_SIDECAR_UPSTREAM): required in quick mode (--client-id was given)',
        '',
      ].join('\n'),
    );
  });
});

describe('F5 the allow-list refusal', () => {
  it('F5: a client outside --allow (repeatable) gets 403 naming its address and inbound.allow', async () => {
    const { tokenServer, upstream, password } = await sessionServers();
    const cli = spawnCli(
      [
        ...['--upstream', upstream.url, '--login-url', tokenServer.loginUrl, '--username', 'u'],
        ...['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-format', 'json'],
        ...['--allow', '10.0.0.0/8', '--allow', '192.168.0.0/16'],
      ],
      { env: { BEARER_SIDECAR_PASSWORD: password } },
    );
    children.push(cli);
    const line = await cli.waitForLog((entry) => entry.msg === 'bearer-sidecar listening');
    const answer = await rawGet(String(line.data), '/vehicles');
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toEqual({
      error: 'forbidden',
      message:
        'client address 127.0.0.1 is not allowed: add it (or a range holding it) to inbound.allow, or --allow in quick mode',
    });
  });
});

describe('§6 the demo and a deferred refresh', () => {
  it('§6: a deferred POST /accounts/NAME/refresh says why in a plain reason', async () => {
    // The admin trigger is held by minInterval (5 s) after the start-up login.
    const session = await harness.session({ server: { lifetimeSeconds: 60 } });
    await session.sidecar.settled(); // the start-up login is done: a POST now is deferred, not joined
    const answer = await fetch(`${session.sidecar.adminUrl()}/accounts/fleet/refresh`, { method: 'POST' });
    const body = (await answer.json()) as Record<string, unknown>;
    expect(body).toEqual({
      account: 'fleet',
      result: 'deferred',
      at: new Date(session.clock.now() + 5_000).toISOString(),
      reason: 'the loop guard spaces token requests at least 5s apart (refresh.minInterval): this one runs at "at"',
    });
  });

  it('§2: the demo explains "deferred" on the line that suggests POST .../refresh', async () => {
    const cli = spawnCli(['demo', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-level', 'silent']);
    children.push(cli);
    const [line] = await cli.waitForStdout(/^.*\/accounts\/fleet\/refresh.*$/m);
    expect(line).toMatch(
      /curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/accounts\/fleet\/refresh +# ask for a token now; "deferred" is no failure: the loop guard holds it until "at" \(see "reason"\)$/,
    );
  });
});
