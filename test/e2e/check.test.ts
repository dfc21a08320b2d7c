import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { OAuth2Server } from 'oauth2-mock-server';
import { beforeEach, describe, expect, it } from 'vitest';
import { runCheck, type CheckResult } from '../../src/commands/check.js';
import { credentialsFingerprint } from '../../src/config/credentials-fingerprint.js';
import { parseConfig } from '../../src/config/load.js';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import { TokenCodec } from '../../src/stores/codec.js';
import { FileTokenStore } from '../../src/stores/file.js';
import { silentLogger } from '../../src/util/logger.js';
import { Secret } from '../../src/util/secret.js';
import { generatedSecret, recordingSend, useHarness } from '../helpers/harness.js';

/*
 * `bearer-sidecar check` (docs/contract.md §2, issue 8): the real CLI against real token servers, and
 * runCheck in-process for the store rules (a check never disturbs a running sidecar's chain).
 */

let dir: string;
let password: string;
let tokenServer: SessionTokenServer;
const harness = useHarness();

beforeEach(async () => {
  dir = harness.tempDir('bs-check-');
  ({ tokenServer, password } = await harness.sessionTokenServer({
    username: 'fleet-user',
    accountId: 42,
    lifetimeSeconds: 60,
  }));
  writeFileSync(join(dir, 'password'), `${password}\n`, { mode: 0o600 });
});

function sessionAccount(server: SessionTokenServer, passwordFile = join(dir, 'password')): string {
  return `    upstream: https://api.example.net
    auth:
      flow: session
      loginUrl: ${server.loginUrl}
      refreshUrl: ${server.refreshUrl}
      username: fleet-user
      passwordFile: ${passwordFile}
      accountId: 42
`;
}

function writeConfig(accounts: Record<string, string>, extra = ''): string {
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    `${extra}accounts:\n${Object.entries(accounts)
      .map(([name, body]) => `  ${name}:\n${body}`)
      .join('')}`,
  );
  return file;
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function checkJson(args: string[]): Promise<{ code: number | null; result: CheckResult; stderr: string }> {
  const run = await harness.runCli(['check', '--json', ...args]);
  return { code: run.code, result: JSON.parse(run.stdout) as CheckResult, stderr: run.stderr };
}

describe('§2 bearer-sidecar check, the real CLI (issue 8)', () => {
  it('§2 check: a good account gets one token; the table shows dialect, endpoint, outcome, lifetime, expiry, skew, fingerprint and next action; exit 0', async () => {
    const file = writeConfig({ 'fleet-a': sessionAccount(tokenServer) });
    const run = await harness.runCli(['check', '--config', file]);
    expect(run.code).toBe(0);
    expect(tokenServer.stats.logins).toBe(1);
    expect(run.stdout).toMatch(/^OK {3}fleet-a \(session\)$/m);
    expect(run.stdout).toMatch(new RegExp(`token endpoint +${tokenServer.loginUrl.replace(/[.]/g, '\\.')}$`, 'm'));
    expect(run.stdout).toMatch(/outcome +ok: HTTP 200/);
    expect(run.stdout).toMatch(/lifetime +60s$/m);
    expect(run.stdout).toMatch(/expires +\d{4}-\d\d-\d\dT[\d:.]+Z \(local clock\)/);
    expect(run.stdout).toMatch(/clock skew +[+-]\d+(\.\d)?s/);
    expect(run.stdout).toMatch(/fingerprint +[0-9a-f]{8}$/m);
    expect(run.stdout).toMatch(/next +the sidecar would refresh with the issued refresh token in 48s/);
    expect(run.stdout).toMatch(/1 account: 1 good/);
    expect(run.stdout + run.stderr).not.toContain(password);
  });

  it('§2 check: a bad secret is a rejected login with the server reason and a fix; exit 1', async () => {
    writeFileSync(join(dir, 'wrong'), generatedSecret('wrong-pw'));
    const file = writeConfig({ 'fleet-a': sessionAccount(tokenServer, join(dir, 'wrong')) });
    const run = await harness.runCli(['check', '--config', file]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL fleet-a \(session\)$/m);
    expect(run.stdout).toMatch(/outcome +rejected: server answered success: false/);
    expect(run.stdout).toMatch(/next +fix the credentials/);
    expect(tokenServer.stats.rejectedLogins).toBe(1);
  });

  it('§2 check: a token URL the server has no endpoint at (404) says so and points at the URL, not the credentials; exit 1', async () => {
    const file = writeConfig({
      crm: `    upstream: https://api.crm.example
    auth: { flow: oauth2, tokenUrl: "${new URL('/no-such-token-endpoint', tokenServer.loginUrl).href}", clientId: app, clientSecret: s3cret }
`,
    });
    const run = await harness.runCli(['check', '--config', file]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/outcome +rejected: HTTP 404: no token endpoint at this URL \(check the token URL\)/);
    expect(run.stdout).toMatch(/next +fix the token URL \(tokenUrl, loginUrl, refreshUrl; --token-url in quick mode\)/);
  });

  it('§2 check: an unreachable token server is an error naming the cause; --json for scripts; exit 1', async () => {
    const port = await closedPort();
    const file = writeConfig({
      crm: `    upstream: https://api.crm.example
    auth: { flow: oauth2, tokenUrl: "http://127.0.0.1:${port}/token", clientId: app, clientSecret: "\${CS}" }
`,
    });
    const run = await harness.runCli(['check', '--json', '--config', file], { env: { CS: generatedSecret('cs') } });
    expect(run.code).toBe(1);
    const result = JSON.parse(run.stdout) as CheckResult;
    expect(result.ok).toBe(false);
    expect(result.accounts[0]).toMatchObject({
      account: 'crm',
      dialect: 'oauth2',
      method: 'token_request',
      kind: 'login',
      outcome: 'error',
      good: false,
    });
    expect(result.accounts[0]?.detail).toMatch(/refused/i);
    expect(result.accounts[0]?.next).toMatch(/retry with backoff/);
  });

  it('§2 check / T1: a token server whose clock is 2 h ahead: skew shown, expiry computed on the local clock from the lifetime', async () => {
    const { tokenServer: skewed } = await harness.sessionTokenServer({
      username: 'fleet-user',
      password,
      accountId: 42,
      lifetimeSeconds: 60,
      clockSkewMs: 2 * 3_600_000,
    });
    const { code, result } = await checkJson(['--config', writeConfig({ 'fleet-a': sessionAccount(skewed) })]);
    expect(code).toBe(0);
    const account = result.accounts[0];
    expect(account?.clockSkewSeconds).toBeGreaterThan(7190);
    expect(account?.clockSkewSeconds).toBeLessThan(7210);
    expect(account?.lifetimeSeconds).toBe(60);
    const expiresIn = Date.parse(account?.expiresAt ?? '') - Date.parse(result.checkedAt);
    expect(expiresIn).toBeGreaterThan(0);
    expect(expiresIn).toBeLessThanOrEqual(60_000);
    expect(account?.next).toMatch(/server clock is [\d.]+[mh] ahead: harmless for expiry/);
  });

  it('§2 check: every account is listed; one bad account makes the exit code 1', async () => {
    writeFileSync(join(dir, 'wrong'), generatedSecret('wrong-pw'));
    const { code, result } = await checkJson([
      '--config',
      writeConfig({ good: sessionAccount(tokenServer), bad: sessionAccount(tokenServer, join(dir, 'wrong')) }),
    ]);
    expect(code).toBe(1);
    expect(result.accounts.map((a) => [a.account, a.good])).toEqual([
      ['good', true],
      ['bad', false],
    ]);
  });

  it('§2 check: bad configuration exits 2 with every problem by path, before any token request', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'accounts:\n  crm:\n    upstream: nope\n    auth: { flow: oauth2, tokenUrl: "x", scopes: a }\n',
    );
    const run = await harness.runCli(['check', '--config', file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^ {2}accounts\.crm\.upstream: not a URL/m);
    expect(run.stderr).toMatch(/^ {2}accounts\.crm\.auth\.tokenUrl: not a URL/m);
    expect(run.stderr).toMatch(/^ {2}accounts\.crm\.auth: unknown key "scopes"/m);
    expect(run.stdout).toBe('');
  });

  it('§2 check: quick mode works too (flags and env twins)', async () => {
    const run = await harness.runCli(
      [
        'check',
        '--upstream',
        'https://api.example.net',
        '--login-url',
        tokenServer.loginUrl,
        '--password-file',
        join(dir, 'password'),
        '--account-id',
        '42',
      ],
      {
        env: { BEARER_SIDECAR_USERNAME: 'fleet-user', BEARER_SIDECAR_JSON: '1' },
      },
    );
    expect(run.code).toBe(0);
    expect((JSON.parse(run.stdout) as CheckResult).accounts[0]).toMatchObject({ account: 'default', outcome: 'ok' });
  });
});

describe('§2 check never disturbs a running sidecar chain (issue 8)', () => {
  async function fileStoreWith(
    account: string,
    refreshToken: Secret | undefined,
    expiresInMs: number,
  ): Promise<string> {
    const path = join(dir, 'state.json');
    const store = new FileTokenStore({ path, codec: new TokenCodec(), logger: silentLogger() });
    const now = Date.now();
    await store.save(account, {
      accessToken: new Secret(generatedSecret('at')),
      refreshToken,
      obtainedAt: now - 10_000,
      expiresAt: now + expiresInMs,
      lifetimeMs: 10_000 + expiresInMs,
    });
    await store.close();
    return path;
  }

  it('§2 check / T9: with a file store it only reads: a valid stored token is reported (fingerprint, expiry, revision), nothing is sent', async () => {
    const path = await fileStoreWith('fleet', new Secret(generatedSecret('rt')), 50_000);
    const config = parseConfig(
      { store: { type: 'file', path }, accounts: { fleet: yamlAccount(tokenServer) } },
      { env: {} },
    );
    const result = await runCheck(config);
    expect(result.ok).toBe(true);
    expect(result.accounts[0]).toMatchObject({
      method: 'store',
      outcome: 'ok',
      revision: 1,
      hasRefreshToken: true,
      lifetimeSource: 'store',
    });
    expect(result.accounts[0]?.fingerprint).toMatch(/^[0-9a-f]{8}$/);
    expect(tokenServer.stats.requests).toBe(0);
  });

  it('§2 check: an expired stored token or an empty store is not good, still with nothing sent; --login logs in and leaves the store alone', async () => {
    const path = await fileStoreWith('fleet', new Secret(generatedSecret('rt')), -1_000);
    const config = parseConfig(
      { store: { type: 'file', path }, accounts: { fleet: yamlAccount(tokenServer), other: yamlAccount(tokenServer) } },
      { env: {} },
    );
    const read = await runCheck(config);
    expect(read.accounts.map((a) => a.outcome)).toEqual(['expired', 'empty']);
    expect(read.ok).toBe(false);
    expect(tokenServer.stats.requests).toBe(0);
    const before = await new FileTokenStore({ path, codec: new TokenCodec(), logger: silentLogger() }).load('fleet');
    const withLogin = await runCheck(config, { login: true });
    expect(withLogin.ok).toBe(true);
    expect(withLogin.accounts.map((a) => [a.method, a.kind, a.outcome])).toEqual([
      ['token_request', 'login', 'ok'],
      ['token_request', 'login', 'ok'],
    ]);
    expect(tokenServer.stats).toMatchObject({ logins: 2, refreshes: 0 });
    const after = await new FileTokenStore({ path, codec: new TokenCodec(), logger: silentLogger() }).load('fleet');
    expect(after?.revision).toBe(before?.revision);
    expect(after?.state.refreshToken?.equals(before?.state.refreshToken)).toBe(true);
  });

  describe('§2 refresh-only accounts (grant refresh_token)', () => {
    let authServer: OAuth2Server;
    beforeEach(async () => {
      authServer = await harness.oauth2Server();
    });

    const refreshOnly = (refreshTokenFile?: string) => ({
      upstream: 'https://api.crm.example',
      auth: {
        flow: 'oauth2',
        tokenUrl: `${authServer.issuer.url}/token`,
        grant: 'refresh_token',
        clientId: 'app',
        clientAuth: 'body',
        ...(refreshTokenFile ? { refreshTokenFile } : {}),
      },
    });

    it('§2 check / T3: without --login nothing is sent: the account says why and what to do', async () => {
      writeFileSync(join(dir, 'rt'), generatedSecret('rt'));
      const recorder = recordingSend();
      const result = await runCheck(parseConfig({ accounts: { crm: refreshOnly(join(dir, 'rt')) } }, { env: {} }), {
        send: recorder.send,
      });
      expect(result.accounts[0]).toMatchObject({ outcome: 'not_checked', good: false, method: 'none' });
      expect(result.accounts[0]?.next).toMatch(/--login/);
      expect(recorder.responses).toHaveLength(0);
    });

    it('§2 check / T3: a stored refresh token is never spent, even with --login', async () => {
      const path = await fileStoreWith('crm', new Secret(generatedSecret('stored-rt')), -1_000);
      const recorder = recordingSend();
      const result = await runCheck(
        parseConfig({ store: { type: 'file', path }, accounts: { crm: refreshOnly() } }, { env: {} }),
        { login: true, send: recorder.send },
      );
      expect(result.accounts[0]).toMatchObject({ method: 'store', outcome: 'expired', hasRefreshToken: true });
      expect(recorder.responses).toHaveLength(0);
    });

    it('§2 check / T3: with --login and an empty file store, the configured refresh token is spent and the rotated one stored, so the chain goes on', async () => {
      writeFileSync(join(dir, 'rt'), generatedSecret('rt'));
      const path = join(dir, 'state.json');
      const recorder = recordingSend();
      const result = await runCheck(
        parseConfig({ store: { type: 'file', path }, accounts: { crm: refreshOnly(join(dir, 'rt')) } }, { env: {} }),
        { login: true, send: recorder.send },
      );
      expect(result.accounts[0]).toMatchObject({
        method: 'token_request',
        kind: 'refresh',
        outcome: 'ok',
        good: true,
        revision: 1,
      });
      const issued = JSON.parse(recorder.responses[0]?.body ?? '{}') as { refresh_token: string };
      const stored = await new FileTokenStore({ path, codec: new TokenCodec(), logger: silentLogger() }).load('crm');
      expect(stored?.state.refreshToken?.reveal()).toBe(issued.refresh_token);
    });

    it('H2, T10: the rotated chain check --login stores is marked with the fingerprint of the credentials checked, so replicas on other credentials do not adopt it', async () => {
      writeFileSync(join(dir, 'rt'), generatedSecret('rt'));
      const path = join(dir, 'state.json');
      const config = parseConfig(
        { store: { type: 'file', path }, accounts: { crm: refreshOnly(join(dir, 'rt')) } },
        { env: {} },
      );
      const result = await runCheck(config, { login: true, send: recordingSend().send });
      expect(result.accounts[0]).toMatchObject({ outcome: 'ok', revision: 1 });
      const stored = await new FileTokenStore({ path, codec: new TokenCodec(), logger: silentLogger() }).load('crm');
      const account = config.accounts[0];
      if (account === undefined) throw new Error('no account');
      expect(stored?.state.credentials).toBe(await credentialsFingerprint(account.auth));
    });

    it('§2 check / T3: with --login and the memory store, a rotated refresh token cannot be kept: not good, and says what to do', async () => {
      writeFileSync(join(dir, 'rt'), generatedSecret('rt'));
      const result = await runCheck(parseConfig({ accounts: { crm: refreshOnly(join(dir, 'rt')) } }, { env: {} }), {
        login: true,
      });
      expect(result.accounts[0]).toMatchObject({ outcome: 'ok', good: false });
      expect(result.accounts[0]?.next).toMatch(/authorize crm --out FILE/);
    });
  });
});

function yamlAccount(server: SessionTokenServer): Record<string, unknown> {
  return {
    upstream: 'https://api.example.net',
    auth: {
      flow: 'session',
      loginUrl: server.loginUrl,
      refreshUrl: server.refreshUrl,
      username: 'fleet-user',
      passwordFile: join(dir, 'password'),
      accountId: 42,
    },
  };
}
