import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import type { DemoUpstream } from '../../src/demo/upstream.js';
import { useHarness } from '../helpers/harness.js';

let dir: string;
let password: string;
let tokenServer: SessionTokenServer;
let upstream: DemoUpstream;
const harness = useHarness();

beforeEach(async () => {
  dir = harness.tempDir('bs-cli-');
  ({ tokenServer, password } = await harness.sessionTokenServer({
    username: 'fleet-user',
    accountId: 42,
    lifetimeSeconds: 60,
  }));
  upstream = await harness.demoUpstream((token) => tokenServer.isValidToken(token));
  writeFileSync(join(dir, 'password'), `${password}\n`, { mode: 0o600 });
});

function configYaml(extra = ''): string {
  return `# written by the CLI test
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
accounts:
  fleet-a:
    upstream: ${upstream.url}
    default: true
    auth:
      flow: session
      loginUrl: ${tokenServer.loginUrl}
      refreshUrl: ${tokenServer.refreshUrl}
      username: \${FLEET_USER}
      passwordFile: ${join(dir, 'password')}
      accountId: 42
${extra}`;
}

describe('§2 commands', () => {
  it('§2: serves a YAML config (with ${VAR} and a password file), forwards with a token, stops on SIGTERM with exit 0', async () => {
    writeFileSync(join(dir, 'sidecar.yaml'), configYaml());
    const { cli, data, admin } = await harness.launchCli(['--config', join(dir, 'sidecar.yaml')], {
      env: { FLEET_USER: 'fleet-user' },
    });
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    const answer = await fetch(`${data}/vehicles`);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ ok: true, path: '/vehicles' });
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    expect(tokenServer.stats.logins).toBe(1);
    expect(cli.stdout() + cli.stderr()).not.toContain(password);
  });

  it('§2: bad configuration exits 2 with one line per problem naming its path, before any token request', async () => {
    writeFileSync(
      join(dir, 'bad.json'),
      JSON.stringify({
        accounts: {
          crm: {
            upstream: 'not a url',
            auth: {
              flow: 'oauth2',
              tokenUrl: tokenServer.loginUrl,
              grant: 'client_credentials',
              clientId: 'x',
              scopes: 'typo',
            },
          },
          fleet: {
            upstream: upstream.url,
            refresh: { minInterval: 'soon' },
            auth: {
              flow: 'session',
              loginUrl: tokenServer.loginUrl,
              username: 'u',
              passwordFile: join(dir, 'password'),
            },
          },
        },
      }),
    );
    const result = await harness.runCli(['--config', join(dir, 'bad.json')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^ {2}accounts\.crm\.upstream: not a URL/m);
    expect(result.stderr).toMatch(/^ {2}accounts\.crm\.auth: unknown key "scopes"/m);
    expect(result.stderr).toMatch(/^ {2}accounts\.fleet\.refresh\.minInterval: not a duration/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(tokenServer.stats.requests).toBe(0);
  });

  it('§2: BEARER_SIDECAR_CONFIG names the file; a missing file exits 2', async () => {
    const result = await harness.runCli([], { env: { BEARER_SIDECAR_CONFIG: join(dir, 'nope.yaml') } });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/config: cannot read .*nope\.yaml \(ENOENT\)/);
  });

  it('§2: quick mode from a .env file; real environment variables win over it', async () => {
    writeFileSync(
      join(dir, '.env'),
      [
        `BEARER_SIDECAR_UPSTREAM=${upstream.url}`,
        'BEARER_SIDECAR_FLOW=session',
        `BEARER_SIDECAR_LOGIN_URL=${tokenServer.loginUrl}`,
        `BEARER_SIDECAR_REFRESH_URL=${tokenServer.refreshUrl}`,
        'BEARER_SIDECAR_USERNAME=someone-else',
        `BEARER_SIDECAR_PASSWORD_FILE=${join(dir, 'password')}`,
        'BEARER_SIDECAR_ACCOUNT_ID=42',
        'BEARER_SIDECAR_LISTEN=127.0.0.1:0',
        'BEARER_SIDECAR_ADMIN=127.0.0.1:0',
      ].join('\n'),
    );
    const { cli, data } = await harness.launchCli([], { cwd: dir, env: { BEARER_SIDECAR_USERNAME: 'fleet-user' } });
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    expect((await fetch(`${data}/vehicles`)).status).toBe(200);
    cli.child.kill('SIGINT');
    expect(await cli.exited).toBe(0);
  });

  it('§2: --help and --version exit 0; an unknown flag exits 2 and suggests the nearest one', async () => {
    const help = await harness.runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--token-url URL .*\[BEARER_SIDECAR_TOKEN_URL\]/);
    const version = await harness.runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const typo = await harness.runCli(['--tokne-url', 'x']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/did you mean --token-url\?/);
  });

  it('§2: a port already in use is a runtime failure: exit 1', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    writeFileSync(join(dir, 'sidecar.yaml'), configYaml());
    const result = await harness.runCli(['--config', join(dir, 'sidecar.yaml'), '--listen', `127.0.0.1:${port}`], {
      env: { FLEET_USER: 'fleet-user' },
    });
    blocker.close();
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/address already in use/);
  });
});

describe('the bearer-sidecar command', () => {
  it('demo: starts a token server, an API and a sidecar; curl through it works and a user can see the counters', async () => {
    const { cli, data, admin } = await harness.launchCli(['demo', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    await cli.waitForLog((entry) => entry.msg === 'token request: login succeeded');
    expect(cli.stdout()).toContain(`curl -s ${data}/vehicles`);
    const answer = await fetch(`${data}/vehicles`);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ ok: true, data: expect.any(Array) });
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(
      /bearer_sidecar_token_requests_total\{account="fleet",kind="login",outcome="success",trigger="startup"\} 1/,
    );
    const status = (await (await fetch(`${admin}/status`)).json()) as { accounts: { fleet: { state: string } } };
    expect(status.accounts.fleet.state).toBe('valid');
    // The printed outage switch breaks the token server; requests go on with the valid token.
    const outage = /curl -s -X POST '([^']+)\?on=1'/.exec(cli.stdout())?.[1];
    expect(outage).toBeDefined();
    expect(await (await fetch(`${outage}?on=1`, { method: 'POST' })).json()).toMatchObject({ outage: true });
    expect((await fetch(`${data}/vehicles`)).status).toBe(200);
    expect(await (await fetch(`${outage}?on=0`, { method: 'POST' })).json()).toMatchObject({ outage: false });
    cli.child.kill('SIGINT');
    expect(await cli.exited).toBe(0);
  });
});
