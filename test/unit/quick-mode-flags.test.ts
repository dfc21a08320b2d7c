import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, loadConfig } from '../../src/config/load.js';
import { withEnvTwins } from '../../src/config/quick-mode.js';
import type { OAuth2Auth, SessionAuth } from '../../src/config/resolve.js';
import { readSecret } from '../../src/util/secret-source.js';
import { problemsOf } from '../helpers/config-problems.js';
import { generatedSecret } from '../helpers/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'bearer-sidecar-quick-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function secretFile(name: string, content: string): string {
  const file = join(dir, name);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

const UPSTREAM = 'https://api.crm.example';
const TOKEN_URL = 'https://auth.crm.example/token';
const LOGIN_URL = 'https://api.example.net/auth/login';

/** Quick mode as the CLI runs it: flags, their environment twins merged in, the environment. */
function quick(flags: Record<string, string>, env: NodeJS.ProcessEnv = {}) {
  return loadConfig({ flags: withEnvTwins(flags, env), env });
}

/** The lines the CLI prints for a refused quick-mode configuration. */
function linesOf(flags: Record<string, string>, env: NodeJS.ProcessEnv = {}): string[] {
  return problemsOf(() => quick(flags, env)).map(formatProblem);
}

describe('§2 quick mode speaks in flags', () => {
  it('§2: a missing --token-url names the flag, its environment twin and the flow that needs it', () => {
    expect(linesOf({ upstream: UPSTREAM, 'client-id': 'app' })).toEqual([
      '--token-url (BEARER_SIDECAR_TOKEN_URL): required for --flow oauth2',
    ]);
  });

  it('§2: a --listen or --admin that is not [HOST:]PORT is quoted back with the flag', () => {
    const base = { upstream: UPSTREAM, 'token-url': TOKEN_URL, 'client-id': 'app' };
    expect(linesOf({ ...base, listen: '8080x' })).toEqual([
      '--listen (BEARER_SIDECAR_LISTEN): "8080x" is not [HOST:]PORT',
    ]);
    expect(linesOf({ ...base, admin: '70000' })).toEqual([
      '--admin (BEARER_SIDECAR_ADMIN): "70000" is not [HOST:]PORT (a port is 0-65535)',
    ]);
    // The same wording when --listen overrides a config file.
    const file = join(dir, 'listen.yaml');
    writeFileSync(
      file,
      `accounts:\n  crm:\n    upstream: ${UPSTREAM}\n    auth: { flow: oauth2, tokenUrl: ${TOKEN_URL}, clientId: app }\n`,
    );
    expect(
      problemsOf(() => loadConfig({ file, flags: { listen: 'localhost:http' }, env: {} })).map(formatProblem),
    ).toEqual(['--listen (BEARER_SIDECAR_LISTEN): "localhost:http" is not [HOST:]PORT']);
  });

  it('§2: every quick-mode flag with a bad value is named, all at once', () => {
    const lines = linesOf({
      upstream: 'api.crm.example',
      flow: 'oauth',
      'token-url': 'ftp://auth.example/token',
      grant: 'client-credentials',
      'client-id': 'app',
      allow: '10.0.0.0/',
    });
    expect(lines).toEqual([
      '--upstream (BEARER_SIDECAR_UPSTREAM): "api.crm.example" is not an http:// or https:// URL',
      '--flow (BEARER_SIDECAR_FLOW): "oauth" is not a flow (oauth2 or session)',
      '--token-url (BEARER_SIDECAR_TOKEN_URL): "ftp://auth.example/token" is not an http:// or https:// URL',
      '--grant (BEARER_SIDECAR_GRANT): "client-credentials" is not a grant (client_credentials, password or refresh_token)',
      '--allow (BEARER_SIDECAR_ALLOW): "10.0.0.0/" is not an address or CIDR range',
    ]);
    expect(linesOf({ upstream: UPSTREAM, 'login-url': LOGIN_URL, 'refresh-url': '/refresh' })).toEqual([
      '--refresh-url (BEARER_SIDECAR_REFRESH_URL): "/refresh" is not an http:// or https:// URL',
      '--username (BEARER_SIDECAR_USERNAME): required for --flow session',
      '--password-file (BEARER_SIDECAR_PASSWORD_FILE) or BEARER_SIDECAR_PASSWORD: required for --flow session',
    ]);
  });

  it('§2: a --flow typo is one problem; the rest is checked as the nearest flow', () => {
    expect(
      linesOf(
        { upstream: UPSTREAM, flow: 'sesion', 'login-url': LOGIN_URL, username: 'u' },
        { BEARER_SIDECAR_PASSWORD: 'p' },
      ),
    ).toEqual(['--flow (BEARER_SIDECAR_FLOW): "sesion" is not a flow (oauth2 or session)']);
  });

  it('§2: what each grant needs is asked for by flag', () => {
    const base = { upstream: UPSTREAM, 'token-url': TOKEN_URL };
    expect(linesOf(base)).toEqual(['--client-id (BEARER_SIDECAR_CLIENT_ID): required for --grant client_credentials']);
    expect(linesOf({ ...base, grant: 'password' })).toEqual([
      '--username (BEARER_SIDECAR_USERNAME): required for --grant password',
      '--password-file (BEARER_SIDECAR_PASSWORD_FILE) or BEARER_SIDECAR_PASSWORD: required for --grant password',
    ]);
    expect(linesOf({ ...base, grant: 'refresh_token' })).toEqual([
      '--refresh-token-file (BEARER_SIDECAR_REFRESH_TOKEN_FILE) or BEARER_SIDECAR_REFRESH_TOKEN: required for --grant refresh_token',
    ]);
  });

  it('§2: a flag of the other dialect is an error naming the flag and the flow', () => {
    expect(
      linesOf(
        { upstream: UPSTREAM, flow: 'session', 'login-url': LOGIN_URL, username: 'u', 'client-id': 'app' },
        {
          BEARER_SIDECAR_PASSWORD: 'pw',
        },
      ),
    ).toEqual(['--client-id (BEARER_SIDECAR_CLIENT_ID): not a flag of --flow session (it is for --flow oauth2)']);
    expect(
      linesOf({
        upstream: UPSTREAM,
        flow: 'oauth2',
        'token-url': TOKEN_URL,
        'client-id': 'app',
        'login-url': LOGIN_URL,
      }),
    ).toEqual(['--login-url (BEARER_SIDECAR_LOGIN_URL): not a flag of --flow oauth2 (it is for --flow session)']);
    // Without --flow, --login-url chooses session: the message says why.
    expect(
      linesOf(
        { upstream: UPSTREAM, 'login-url': LOGIN_URL, username: 'u', scope: 'read' },
        { BEARER_SIDECAR_PASSWORD: 'p' },
      ),
    ).toEqual([
      '--scope (BEARER_SIDECAR_SCOPE): not a flag of --flow session, chosen because --login-url is given (it is for --flow oauth2)',
    ]);
  });

  it('§2: an unreadable secret file is reported at its flag', () => {
    expect(
      linesOf({
        upstream: UPSTREAM,
        'token-url': TOKEN_URL,
        'client-id': 'app',
        'client-secret-file': join(dir, 'nope'),
      })[0],
    ).toMatch(/^--client-secret-file \(BEARER_SIDECAR_CLIENT_SECRET_FILE\): /);
  });

  it('S5: --allow replaces the loopback default; repeated values arrive comma-separated, as in BEARER_SIDECAR_ALLOW', () => {
    const base = { upstream: UPSTREAM, 'token-url': TOKEN_URL, 'client-id': 'app' };
    const config = quick({ ...base, allow: '10.0.0.0/8, 192.168.1.7' });
    expect(config.inbound.allow.check('10.1.2.3', 'ipv4')).toBe(true);
    expect(config.inbound.allow.check('192.168.1.7', 'ipv4')).toBe(true);
    expect(config.inbound.allow.check('127.0.0.1', 'ipv4')).toBe(false);
    const fromEnv = quick(base, { BEARER_SIDECAR_ALLOW: '127.0.0.1,::1' });
    expect(fromEnv.inbound.allow.check('::1', 'ipv6')).toBe(true);
    expect(fromEnv.inbound.allow.check('10.1.2.3', 'ipv4')).toBe(false);
  });

  it('S5: --host adds to inbound.hosts; repeated values arrive comma-separated, as in BEARER_SIDECAR_HOST', () => {
    const base = { upstream: UPSTREAM, 'token-url': TOKEN_URL, 'client-id': 'app' };
    expect(quick({ ...base, host: 'my-laptop, sidecar.tools.svc' }).inbound.hosts).toEqual([
      'my-laptop',
      'sidecar.tools.svc',
    ]);
    expect(quick(base, { BEARER_SIDECAR_HOST: 'gw.example' }).inbound.hosts).toEqual(['gw.example']);
    expect(quick(base).inbound.hosts).toEqual([]);
  });

  it('S5: a --host that is not a host name is a problem naming the flag', () => {
    const base = { upstream: UPSTREAM, 'token-url': TOKEN_URL, 'client-id': 'app' };
    expect(linesOf({ ...base, host: 'ok.example,http://my-laptop:8080' })).toEqual([
      '--host (BEARER_SIDECAR_HOST): "http://my-laptop:8080" is not a host name (write the name alone, without scheme, port or path, e.g. bearer-sidecar.tools.svc)',
    ]);
  });
});

describe('R6 secrets in environment variables', () => {
  it('R6: BEARER_SIDECAR_CLIENT_SECRET, _PASSWORD and _REFRESH_TOKEN give quick mode its secrets', async () => {
    const clientSecret = generatedSecret('client');
    const refreshToken = generatedSecret('refresh');
    const password = `${generatedSecret('pw')}$$\${HOME}`;
    const oauth2 = quick(
      { upstream: UPSTREAM, 'token-url': TOKEN_URL, 'client-id': 'app', grant: 'refresh_token' },
      { BEARER_SIDECAR_CLIENT_SECRET: clientSecret, BEARER_SIDECAR_REFRESH_TOKEN: refreshToken },
    );
    const auth = oauth2.accounts[0]?.auth as OAuth2Auth;
    expect((await readSecret(auth.clientSecret ?? fail())).reveal()).toBe(clientSecret);
    expect((await readSecret(auth.refreshToken ?? fail())).reveal()).toBe(refreshToken);
    // A secret is taken as it is: no ${VAR} expansion inside it.
    const session = quick(
      { upstream: UPSTREAM, 'login-url': LOGIN_URL, username: 'u' },
      { BEARER_SIDECAR_PASSWORD: password },
    );
    expect((await readSecret((session.accounts[0]?.auth as SessionAuth).password)).reveal()).toBe(password);
  });

  it('R6: an empty secret variable is the empty-secret error; a variable and its file together are one error', () => {
    const base = { upstream: UPSTREAM, 'token-url': TOKEN_URL, 'client-id': 'app' };
    expect(linesOf(base, { BEARER_SIDECAR_CLIENT_SECRET: '' })).toEqual([
      'BEARER_SIDECAR_CLIENT_SECRET: is empty (an empty secret is never sent)',
    ]);
    const file = secretFile('client-secret', 'abc\n');
    expect(linesOf({ ...base, 'client-secret-file': file }, { BEARER_SIDECAR_CLIENT_SECRET: 'abc' })).toEqual([
      'BEARER_SIDECAR_CLIENT_SECRET: set either it or --client-secret-file (BEARER_SIDECAR_CLIENT_SECRET_FILE), not both',
    ]);
  });
});

describe('§2 environment variables', () => {
  it('§2: an unknown BEARER_SIDECAR_* variable is an error with the nearest known name', () => {
    const env = { BEARER_SIDECAR_UPSTREM: UPSTREAM, BEARER_SIDECAR_TOKEN_URL: TOKEN_URL, BEARER_SIDECAR_WHATEVER: 'x' };
    const problems = problemsOf(() =>
      loadConfig({ flags: withEnvTwins({ upstream: UPSTREAM, 'client-id': 'a' }, env), env, knownEnv: new Set() }),
    );
    expect(problems.map(formatProblem)).toEqual([
      'BEARER_SIDECAR_UPSTREM: not a variable bearer-sidecar knows; did you mean BEARER_SIDECAR_UPSTREAM?',
      'BEARER_SIDECAR_WHATEVER: not a variable bearer-sidecar knows (see bearer-sidecar --help)',
    ]);
  });

  it('§2: a BEARER_SIDECAR_* variable the config file names as ${VAR} is known', () => {
    const file = join(dir, 'api-key.yaml');
    writeFileSync(
      file,
      `inbound: { apiKeys: ["\${BEARER_SIDECAR_API_KEY}"] }\naccounts:\n  crm:\n    upstream: ${UPSTREAM}\n    auth: { flow: oauth2, tokenUrl: ${TOKEN_URL}, clientId: app }\n`,
    );
    const env = { BEARER_SIDECAR_API_KEY: 'k', BEARER_SIDECAR_CONFIG: file };
    expect(loadConfig({ file, env, knownEnv: new Set(['BEARER_SIDECAR_CONFIG']) }).inbound.apiKeys).toHaveLength(1);
    // A secret variable is quick mode's, unless the file names it itself.
    const withPassword = join(dir, 'password.yaml');
    writeFileSync(
      withPassword,
      `accounts:\n  fleet:\n    upstream: ${UPSTREAM}\n    auth: { flow: session, loginUrl: ${LOGIN_URL}, username: u, password: "\${BEARER_SIDECAR_PASSWORD}" }\n`,
    );
    expect(
      loadConfig({ file: withPassword, env: { BEARER_SIDECAR_PASSWORD: 'p' }, knownEnv: new Set() }).accounts,
    ).toHaveLength(1);
    expect(
      problemsOf(() => loadConfig({ file, env: { BEARER_SIDECAR_PASSWORD: 'p', BEARER_SIDECAR_API_KEY: 'k' } })).map(
        formatProblem,
      ),
    ).toEqual(['flags: BEARER_SIDECAR_PASSWORD build a quick-mode account and cannot be combined with a config file']);
  });
});

function fail(): never {
  throw new Error('secret missing');
}
