import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, loadConfig, parseConfig } from '../../src/config/load.js';
import type { OAuth2Auth } from '../../src/config/resolve.js';
import { problemsOf } from '../helpers/config-problems.js';

const dir = mkdtempSync(join(tmpdir(), 'bearer-sidecar-config-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OAUTH2 = { flow: 'oauth2', tokenUrl: 'https://auth.crm.example/token', clientId: 'app' };

function linesOf(raw: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  return problemsOf(() => parseConfig(raw, { env })).map(formatProblem);
}

describe('§3 problems in a config file', () => {
  it('§3: an unknown key gets the nearest key valid at that place', () => {
    const lines = linesOf({
      listn: { port: 8080 },
      accounts: {
        defualt: {
          upstrem: 'https://api.crm.example',
          refersh: { at: 0.5 },
          auth: { ...OAUTH2, clientId: undefined, clientID: 'app', scopes: 'read' },
        },
      },
    });
    expect(lines).toEqual([
      '(root): unknown key "listn"; did you mean "listen"?',
      'accounts.defualt: unknown key "upstrem"; did you mean "upstream"?',
      'accounts.defualt: unknown key "refersh"; did you mean "refresh"?',
      'accounts.defualt.auth: unknown key "clientID"; did you mean "clientId"?',
      'accounts.defualt.auth: unknown key "scopes"; did you mean "scope"?',
    ]);
  });

  it('§3: a key far from every valid one is reported without a guess; a session key suggests session keys only', () => {
    const lines = linesOf({
      accounts: {
        crm: {
          upstream: 'https://api.crm.example',
          auth: { flow: 'session', loginUrl: 'https://a.example/login', username: 'u', password: 'p', tokenUrl: 'x' },
          whatever: 1,
        },
      },
    });
    expect(lines).toEqual([
      'accounts.crm: unknown key "whatever"',
      'accounts.crm.auth: unknown key "tokenUrl" (a key of flow oauth2; this account has flow session)',
    ]);
  });

  it('§3: a port given as a string (quoted, or from a ${VAR}) names the port and how to write it, in either shape of listen and admin', () => {
    const account = { crm: { upstream: 'https://api.crm.example', auth: OAUTH2 } };
    expect(
      linesOf(
        { listen: { host: '127.0.0.1', port: '${DATA_PORT}' }, admin: { port: '9464' }, accounts: account },
        {
          DATA_PORT: '18080',
        },
      ),
    ).toEqual([
      'admin.port: expected a number, not the string "9464": write it without quotes (a ${VAR} always gives a string, so a number cannot come from one)',
      'listen.port: expected a number, not the string "18080": write it without quotes (a ${VAR} always gives a string, so a number cannot come from one)',
    ]);
    // Neither shape fits and neither comes closer: the place is named as a whole.
    expect(linesOf({ listen: 'localhost:8080', accounts: account })).toEqual([
      'listen: expected { host, port } (the port a number) or { path } (a unix socket)',
    ]);
  });

  it('§3: an unset ${VAR} is reported once, not again as a bad value at the same place', () => {
    expect(linesOf({ accounts: { crm: { upstream: '${UNSET_UPSTREAM}', auth: OAUTH2 } } })).toEqual([
      'accounts.crm.upstream: environment variable UNSET_UPSTREAM is not set',
    ]);
  });

  it('§3: a bad flow does not hide the rest: the auth is checked as the nearest flow, every account at once', () => {
    const lines = linesOf({
      accounts: {
        crm: { upstream: 'https://api.crm.example', auth: { flow: 'oauth', tokenUrl: 'nope', clientID: 'app' } },
        fleet: {
          upstream: 'not a url',
          auth: { flow: 'sesion', loginUrl: 'https://a.example/login', username: 'u', pasword: 'p' },
        },
        other: { upstream: 'https://api.example', auth: { tokenUrl: 'https://a.example/token', clientId: 'app' } },
      },
    });
    expect(lines).toEqual([
      'accounts.crm.auth.flow: "oauth" is not a flow (oauth2 or session); the rest is checked as oauth2',
      'accounts.fleet.auth.flow: "sesion" is not a flow (oauth2 or session); the rest is checked as session',
      'accounts.other.auth.flow: required (oauth2 or session); the rest is checked as oauth2',
      'accounts.crm.auth: unknown key "clientID"; did you mean "clientId"?',
      'accounts.crm.auth.tokenUrl: not a URL (expected http:// or https://)',
      'accounts.fleet.auth: unknown key "pasword"; did you mean "password"?',
      'accounts.fleet.upstream: not a URL (expected http:// or https://)',
    ]);
  });
});

describe('§3 relative paths in a config file', () => {
  it("§3: relative secret, state and CA paths resolve against the config file's directory, not the working directory", () => {
    const configDir = join(dir, 'etc');
    mkdirSync(join(configDir, 'secrets'), { recursive: true });
    writeFileSync(join(configDir, 'secrets', 'client-secret'), 'cs\n', { mode: 0o600 });
    writeFileSync(join(configDir, 'ca.pem'), 'not checked beyond being a regular file\n');
    const file = join(configDir, 'config.yaml');
    writeFileSync(
      file,
      [
        'store: { type: file, path: state.json }',
        'upstreamTls: { caFile: ca.pem }',
        'accounts:',
        '  crm:',
        '    upstream: https://api.crm.example',
        '    auth: { flow: oauth2, tokenUrl: https://auth.crm.example/token, clientId: app, clientSecretFile: secrets/client-secret }',
        '',
      ].join('\n'),
    );
    expect(process.cwd()).not.toBe(configDir);
    const config = loadConfig({ file, env: {} });
    expect((config.accounts[0]?.auth as OAuth2Auth).clientSecret).toMatchObject({
      kind: 'file',
      path: join(configDir, 'secrets', 'client-secret'),
    });
    expect(config.store).toMatchObject({ type: 'file', path: join(configDir, 'state.json') });
    expect(config.accounts[0]?.tls.caFile).toBe(join(configDir, 'ca.pem'));
  });
});
