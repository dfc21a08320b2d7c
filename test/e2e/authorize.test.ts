import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { Sidecar } from '../../src/app.js';
import { credentialsFingerprint } from '../../src/config/credentials-fingerprint.js';
import { loadConfig } from '../../src/config/load.js';
import type { AuthConfig } from '../../src/config/resolve.js';
import { TokenCodec } from '../../src/stores/codec.js';
import { FileTokenStore } from '../../src/stores/file.js';
import { silentLogger } from '../../src/util/logger.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { generatedSecret, useHarness } from '../helpers/harness.js';
import { signInAndConsent, startAuthorizationServer, type TestAuthorizationServer } from '../helpers/oidc-provider.js';
import type { RunningCli } from '../helpers/spawn-cli.js';

/*
 * `bearer-sidecar authorize` (docs/contract.md §2, seed 004, issue 8) against a real third-party
 * authorization server (node-oidc-provider), the user's login and consent played with plain
 * HTTP requests; then the sidecar runs on grant refresh_token with the chain it stored.
 */

let dir: string;
let as: TestAuthorizationServer;
const harness = useHarness();

beforeEach(async () => {
  dir = harness.tempDir('bs-authorize-');
  as = await startAuthorizationServer();
  harness.defer(() => as.close());
  writeFileSync(join(dir, 'client-secret'), `${as.clientSecret}\n`, { mode: 0o600 });
});

function writeConfig(options: {
  grant: 'client_credentials' | 'refresh_token';
  store: string;
  refreshTokenFile?: string;
}): string {
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
store: ${options.store}
accounts:
  crm:
    upstream: ${as.issuer}
    default: true
    auth:
      flow: oauth2
      tokenUrl: ${as.issuer}/token
      authorizeUrl: ${as.issuer}/auth
      grant: ${options.grant}
      clientId: ${as.clientId}
      clientSecretFile: ${join(dir, 'client-secret')}
      scope: openid
${options.refreshTokenFile === undefined ? '' : `      refreshTokenFile: ${options.refreshTokenFile}\n`}`,
  );
  return file;
}

/** Starts `authorize crm`, waits for the URL it prints, and returns it with the running CLI. */
async function startAuthorize(args: string[]): Promise<{ cli: RunningCli; url: URL }> {
  const cli = harness.spawnCli(['authorize', 'crm', ...args]);
  const printed = await cli.waitForStdout(/^ {2}(http:\/\/\S+)$/m);
  return { cli, url: new URL(printed[1] ?? '') };
}

async function startSidecar(configFile: string): Promise<Sidecar> {
  const log = captureLogger();
  const sidecar = new Sidecar(loadConfig({ file: configFile, env: {} }), { logger: log.logger, defaultMetrics: false });
  harness.defer(() => sidecar.stop());
  await sidecar.start();
  await sidecar.settled();
  return sidecar;
}

describe('§2 bearer-sidecar authorize against oidc-provider (seed 004)', () => {
  it('§2 authorize: PKCE S256 and state, login and consent, code exchanged with clientAuth basic, refresh token in the file store; the sidecar then serves with provider-issued tokens and rotates the chain', async () => {
    const state = join(dir, 'state.json');
    // Bootstrapped before the account is switched over: its grant is still client_credentials.
    const { cli, url } = await startAuthorize([
      '--config',
      writeConfig({ grant: 'client_credentials', store: `{ type: file, path: ${state} }` }),
    ]);
    const params = Object.fromEntries(url.searchParams);
    expect(url.origin + url.pathname).toBe(`${as.issuer}/auth`);
    expect(params).toMatchObject({
      response_type: 'code',
      client_id: as.clientId,
      scope: 'openid',
      code_challenge_method: 'S256',
    });
    expect(params.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.state?.length).toBeGreaterThanOrEqual(16);
    expect(params.redirect_uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);

    // A redirect with a wrong state is refused, and the command keeps waiting for the real one.
    const forged = await fetch(`${params.redirect_uri}?code=forged&state=not-the-state`);
    expect(forged.status).toBe(400);

    const landing = await signInAndConsent(url.href, { login: 'jsmith', password: generatedSecret('pw') });
    expect(landing.status).toBe(200);
    expect(await landing.text()).toContain('Authorized');
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).toMatch(/Saved to the file store \(revision 1\)/);
    expect(cli.stdout()).toMatch(/grant: refresh_token/);

    const stored = await new FileTokenStore({ path: state, codec: new TokenCodec(), logger: silentLogger() }).load(
      'crm',
    );
    const firstRefresh = stored?.state.refreshToken?.reveal() ?? '';
    expect(firstRefresh).not.toBe('');
    expect(cli.stdout() + cli.stderr()).not.toContain(firstRefresh);
    expect(cli.stdout() + cli.stderr()).not.toContain(stored?.state.accessToken.reveal());
    expect(statSync(state).mode & 0o777).toBe(0o600);

    // The account now runs on grant refresh_token with no refreshToken configured: the chain is in the store.
    const sidecar = await startSidecar(
      writeConfig({ grant: 'refresh_token', store: `{ type: file, path: ${state} }` }),
    );
    const me = await fetch(`${sidecar.dataUrl()}/me`);
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ sub: 'jsmith' });

    // A refresh with the stored refresh token: the provider rotates it, the store follows (T3).
    const before = sidecar.manager('crm')?.status();
    expect((await fetch(`${sidecar.adminUrl()}/accounts/crm/refresh`, { method: 'POST' })).status).toBe(202);
    await sidecar.settled();
    const after = sidecar.manager('crm')?.status();
    expect(after?.counts.refresh.success).toBe(1);
    expect(after?.fingerprint).not.toBe(before?.fingerprint);
    const rotated = await new FileTokenStore({ path: state, codec: new TokenCodec(), logger: silentLogger() }).load(
      'crm',
    );
    expect(rotated?.revision).toBe(2);
    expect(rotated?.state.refreshToken?.reveal()).not.toBe(firstRefresh);
    const again = await fetch(`${sidecar.dataUrl()}/me`);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ sub: 'jsmith' });
  });

  it('H2, T10: authorize marks the stored chain with the fingerprint of the credentials that will run it (grant refresh_token), not with none that any replica adopts', async () => {
    const state = join(dir, 'state.json');
    const store = `{ type: file, path: ${state} }`;
    const { cli, url } = await startAuthorize(['--config', writeConfig({ grant: 'client_credentials', store })]);
    await signInAndConsent(url.href, { login: 'jsmith', password: generatedSecret('pw') });
    expect(await cli.exited).toBe(0);
    const stored = await new FileTokenStore({ path: state, codec: new TokenCodec(), logger: silentLogger() }).load(
      'crm',
    );
    const running = loadConfig({ file: writeConfig({ grant: 'refresh_token', store }), env: {} }).accounts[0];
    if (running === undefined) throw new Error('no account');
    expect(stored?.state.credentials).toBe(await credentialsFingerprint(running.auth));
    // Other credentials (another client) do not take it for theirs.
    expect(stored?.state.credentials).not.toBe(
      await credentialsFingerprint({ ...running.auth, clientId: 'another-client' } as AuthConfig),
    );
  });

  it('§2 authorize: with the memory store, --out writes the refresh token (mode 0600) for refreshTokenFile, and the sidecar runs on it', async () => {
    const out = join(dir, 'refresh-token');
    const { cli, url } = await startAuthorize([
      '--config',
      writeConfig({ grant: 'client_credentials', store: '{ type: memory }' }),
      '--out',
      out,
    ]);
    expect((await signInAndConsent(url.href, { login: 'jsmith', password: generatedSecret('pw') })).status).toBe(200);
    expect(await cli.exited).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const refreshToken = readFileSync(out, 'utf8').trim();
    expect(refreshToken.length).toBeGreaterThan(20);
    expect(cli.stdout()).not.toContain(refreshToken);
    expect(cli.stdout()).toContain(`refreshTokenFile: ${out}`);

    const sidecar = await startSidecar(
      writeConfig({ grant: 'refresh_token', store: '{ type: memory }', refreshTokenFile: out }),
    );
    expect(sidecar.manager('crm')?.status().counts.refresh.success).toBe(1);
    const me = await fetch(`${sidecar.dataUrl()}/me`);
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ sub: 'jsmith' });
  });

  it('§2 authorize: a user who says no ends the command with exit 1 and the server reason; nothing is written', async () => {
    const out = join(dir, 'refresh-token');
    const { cli, url } = await startAuthorize([
      '--config',
      writeConfig({ grant: 'client_credentials', store: '{ type: memory }' }),
      '--out',
      out,
    ]);
    const landing = await signInAndConsent(url.href, { login: 'jsmith', password: 'x' }, 'deny');
    expect(landing.status).toBe(400);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toMatch(/authorize: the authorization server answered access_denied/);
    expect(() => statSync(out)).toThrow();
  });

  it('§2 authorize: an account it cannot work with is a configuration error naming the path (exit 2)', async () => {
    const file = join(dir, 'plain.yaml');
    writeFileSync(
      file,
      `accounts:\n  crm:\n    upstream: ${as.issuer}\n    auth: { flow: oauth2, tokenUrl: "${as.issuer}/token", clientId: app }\n`,
    );
    const noUrl = await harness.runCli(['authorize', 'crm', '--config', file]);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toMatch(/^ {2}accounts\.crm\.auth\.authorizeUrl: required for bearer-sidecar authorize/m);
    const unknown = await harness.runCli(['authorize', 'nope', '--config', file]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/accounts\.nope: no such account \(accounts: crm\)/);
  });
});
