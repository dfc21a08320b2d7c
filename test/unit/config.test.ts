import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { adminExposureWarning } from '../../src/admin/access.js';
import { expandEnv } from '../../src/config/expand-env.js';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { envTwin, quickModeConfig, withEnvTwins } from '../../src/config/quick-mode.js';
import { parseHostPort } from '../../src/util/host-port.js';
import {
  secretFilesOf,
  type ConfigProblem,
  type OAuth2Auth,
  type SessionAuth,
  type SidecarConfig,
} from '../../src/config/resolve.js';
import { parseDuration } from '../../src/util/duration.js';
import { Secret } from '../../src/util/secret.js';
import { SecretFile } from '../../src/util/secret-file.js';
import { readSecret } from '../../src/util/secret-source.js';
import { problemsOf } from '../helpers/config-problems.js';

const dir = mkdtempSync(join(tmpdir(), 'bearer-sidecar-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function tempFile(name: string, content: string): string {
  fileCount += 1;
  const file = join(dir, `${fileCount}-${name}`);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

function randomSecret(): string {
  return randomBytes(18).toString('base64url');
}

const clientSecretFile = tempFile('client-secret', `${randomSecret()}\n`);

const OAUTH2 = {
  flow: 'oauth2',
  tokenUrl: 'https://auth.crm.example/token',
  clientId: 'my-app',
  clientSecretFile,
} as const;
const SESSION = {
  flow: 'session',
  loginUrl: 'https://api.example.net/auth/login',
  refreshUrl: 'https://api.example.net/auth/refresh',
  username: 'fleet',
  password: 'pw',
} as const;

function oneAccount(
  auth: Record<string, unknown> = OAUTH2,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { accounts: { crm: { upstream: 'https://api.crm.example/v2', auth, ...extra } } };
}

function parse(raw: unknown, env: NodeJS.ProcessEnv = {}): SidecarConfig {
  return parseConfig(raw, { env });
}

function firstAccount(config: SidecarConfig) {
  const account = config.accounts[0];
  if (account === undefined) throw new Error('no account');
  return account;
}

describe('§3 defaults', () => {
  it('§3: listen defaults to 127.0.0.1:8080 and admin to 127.0.0.1:9464', () => {
    const config = parse(oneAccount());
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.admin).toMatchObject({ host: '127.0.0.1', port: 9464 });
  });

  it('§3: store defaults to memory, inbound.allow to loopback, apiKeys to none', () => {
    const config = parse(oneAccount());
    expect(config.store).toEqual({ type: 'memory' });
    expect(config.inbound.allow.check('127.255.0.9', 'ipv4')).toBe(true);
    expect(config.inbound.allow.check('127.0.0.1', 'ipv4')).toBe(true);
    expect(config.inbound.allow.check('::1', 'ipv6')).toBe(true);
    expect(config.inbound.allow.check('10.0.0.1', 'ipv4')).toBe(false);
    expect(config.inbound.apiKeys).toEqual([]);
  });

  it('§3: refresh defaults are at 0.8, minInterval 5s, timeout 10s, waitForToken 10s, defaultLifetime 300s, maxLifetime 24h, replayMaxBody 1 MiB', () => {
    expect(firstAccount(parse(oneAccount())).refresh).toEqual({
      at: 0.8,
      minIntervalMs: 5_000,
      timeoutMs: 10_000,
      waitForTokenMs: 10_000,
      retryOn: [401],
      replayMaxBody: 1_048_576,
      defaultLifetimeMs: 300_000,
      maxLifetimeMs: 86_400_000,
    });
  });

  it('§3: retryOn defaults to [401] for oauth2 and [401, 403] for session', () => {
    const config = parse({
      accounts: {
        crm: { upstream: 'https://api.crm.example', auth: OAUTH2 },
        fleet: { upstream: 'https://api.example.net', auth: SESSION },
      },
    });
    expect(config.accounts.find((a) => a.name === 'crm')?.refresh.retryOn).toEqual([401]);
    expect(config.accounts.find((a) => a.name === 'fleet')?.refresh.retryOn).toEqual([401, 403]);
  });

  it("§3: the top-level refresh: sets defaults that an account's own refresh: overrides field by field", () => {
    const config = parse({
      refresh: { at: 0.5, minInterval: '30s', retryOn: [401, 419] },
      accounts: {
        a: { upstream: 'https://a.example', auth: OAUTH2, refresh: { minInterval: '1s' } },
        b: { upstream: 'https://b.example', auth: SESSION },
      },
    });
    const a = config.accounts.find((account) => account.name === 'a');
    const b = config.accounts.find((account) => account.name === 'b');
    expect(a?.refresh.minIntervalMs).toBe(1_000);
    expect(a?.refresh.at).toBe(0.5);
    expect(a?.refresh.retryOn).toEqual([401, 419]);
    expect(b?.refresh.minIntervalMs).toBe(30_000);
    expect(b?.refresh.at).toBe(0.5);
    expect(b?.refresh.retryOn).toEqual([401, 419]);
    // Untouched fields keep the built-in defaults.
    expect(b?.refresh.timeoutMs).toBe(10_000);
  });

  it('§3: an account is named by its key, its upstream is a URL, default is false unless set', () => {
    const account = firstAccount(parse(oneAccount()));
    expect(account.name).toBe('crm');
    expect(account.upstream.href).toBe('https://api.crm.example/v2');
    expect(account.isDefault).toBe(false);
    expect((account.auth as OAuth2Auth).grant).toBe('client_credentials');
    expect((account.auth as OAuth2Auth).clientAuth).toBe('basic');
    expect((account.auth as OAuth2Auth).bodyEncoding).toBe('form');
  });

  describe('§2 commands', () => {
    it('§2: shutdownTimeout defaults to 20s (20000 ms)', () => {
      expect(parse(oneAccount()).shutdownTimeoutMs).toBe(20_000);
    });
  });
});

describe('§3 ${VAR} expansion', () => {
  it('§3: ${VAR} is replaced by the environment variable', () => {
    const config = parse(oneAccount({ ...SESSION, username: '${FLEET_USER}' }), { FLEET_USER: 'alice' });
    expect((firstAccount(config).auth as SessionAuth).username).toBe('alice');
  });

  it('§3: ${VAR:-default} uses the default when VAR is unset or empty, the value when set', () => {
    const problems: ConfigProblem[] = [];
    expect(expandEnv('x-${A:-fallback}-y', {}, problems)).toBe('x-fallback-y');
    expect(expandEnv('${A:-fallback}', { A: '' }, problems)).toBe('fallback');
    expect(expandEnv('${A:-fallback}', { A: 'set' }, problems)).toBe('set');
    expect(expandEnv('${A:-}', {}, problems)).toBe('');
    expect(problems).toEqual([]);
  });

  it('§3: $$ is a literal $, so $${VAR} is the text ${VAR}', () => {
    const problems: ConfigProblem[] = [];
    expect(expandEnv('price $$5', {}, problems)).toBe('price $5');
    expect(expandEnv('$${HOME}', { HOME: '/root' }, problems)).toBe('${HOME}');
    expect(expandEnv('a $ b and $NOT_BRACED', {}, problems)).toBe('a $ b and $NOT_BRACED');
    expect(problems).toEqual([]);
  });

  it('§3: expansion reaches strings nested in maps and lists, and leaves numbers, booleans and null alone', () => {
    const problems: ConfigProblem[] = [];
    const out = expandEnv({ a: ['${X}', 1, true, null], b: { c: 'v=${X}' } }, { X: 'x' }, problems);
    expect(out).toEqual({ a: ['x', 1, true, null], b: { c: 'v=x' } });
  });

  describe('§2 commands', () => {
    it('§2: an unset variable without a default is a problem that names its path', () => {
      const problems = problemsOf(() => parse(oneAccount({ ...OAUTH2, scope: '${CRM_SCOPE}' })));
      expect(problems).toContainEqual({
        path: 'accounts.crm.auth.scope',
        message: expect.stringContaining('CRM_SCOPE') as string,
      });
    });

    it('§2: expandEnv names list items by index in the path', () => {
      const problems: ConfigProblem[] = [];
      expandEnv({ inbound: { apiKeys: ['ok', '${MISSING_KEY}'] } }, {}, problems);
      expect(problems).toEqual([
        { path: 'inbound.apiKeys.1', message: expect.stringContaining('MISSING_KEY') as string },
      ]);
    });
  });
});

describe('§3 durations', () => {
  it('§3: durations are 500ms, 10s, 5m, 1h or a number of seconds', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('30')).toBe(30_000);
    expect(parseDuration(30)).toBe(30_000);
    expect(parseDuration(0)).toBe(0);
  });

  it('§3: anything else is not a duration', () => {
    for (const bad of ['5d', '-1s', '', 'abc', '1h30m', 'ms', '10 parsecs'])
      expect(parseDuration(bad), bad).toBeUndefined();
    expect(parseDuration(-1)).toBeUndefined();
    expect(parseDuration(Number.NaN)).toBeUndefined();
    expect(parseDuration(Number.POSITIVE_INFINITY)).toBeUndefined();
  });

  it('§3: durations in the file are resolved to milliseconds', () => {
    const config = parse({
      ...oneAccount(OAUTH2, {
        refresh: { minInterval: '1500ms', timeout: '10s', waitForToken: '5m', maxLifetime: '1h', defaultLifetime: 30 },
      }),
      shutdownTimeout: '1m',
    });
    const refresh = firstAccount(config).refresh;
    expect(refresh.minIntervalMs).toBe(1500);
    expect(refresh.timeoutMs).toBe(10_000);
    expect(refresh.waitForTokenMs).toBe(300_000);
    expect(refresh.maxLifetimeMs).toBe(3_600_000);
    expect(refresh.defaultLifetimeMs).toBe(30_000);
    expect(config.shutdownTimeoutMs).toBe(60_000);
  });

  describe('T6 loop guard', () => {
    it.each(['0', '500ms', 0])(
      'T6: refresh.minInterval %s is refused: the loop guard needs a floor of 1s',
      (minInterval) => {
        const problems = problemsOf(() => parse(oneAccount(OAUTH2, { refresh: { minInterval } })));
        expect(problems).toContainEqual({
          path: 'accounts.crm.refresh.minInterval',
          message: expect.stringMatching(/at least 1s/),
        });
      },
    );
  });

  describe('§2 commands', () => {
    it('§2: a bad duration is a problem at its path', () => {
      const problems = problemsOf(() =>
        parse({ ...oneAccount(OAUTH2, { refresh: { minInterval: '5 parsecs' } }), shutdownTimeout: 'soon' }),
      );
      expect(problems.map((p) => p.path).sort()).toEqual(['accounts.crm.refresh.minInterval', 'shutdownTimeout']);
      expect(problems[0]?.message).toMatch(/not a duration/);
    });
  });
});

describe('R9 limits and R10 the upstream pool', () => {
  it('R9: limits default to headersTimeout 20s, maxConnections 4096, replayBudget 32MiB', () => {
    expect(parse(oneAccount()).limits).toEqual({
      headersTimeoutMs: 20_000,
      maxConnections: 4096,
      replayBudgetBytes: 32 * 1024 * 1024,
    });
  });

  it('R9: limits take durations and sizes (bytes, KiB, MiB, GiB)', () => {
    const config = parse({
      ...oneAccount(),
      limits: { headersTimeout: '5s', maxConnections: 10, replayBudget: '512KiB' },
    });
    expect(config.limits).toEqual({ headersTimeoutMs: 5_000, maxConnections: 10, replayBudgetBytes: 512 * 1024 });
    expect(parse({ ...oneAccount(), limits: { replayBudget: 0 } }).limits.replayBudgetBytes).toBe(0);
    expect(parse({ ...oneAccount(), limits: { replayBudget: '1GiB' } }).limits.replayBudgetBytes).toBe(1024 ** 3);
  });

  it('R9: a bad size, a zero head deadline or no connection allowed is a problem at its path', () => {
    const problems = problemsOf(() =>
      parse({ ...oneAccount(), limits: { headersTimeout: 0, maxConnections: 0, replayBudget: '32MB' } }),
    );
    expect(problems.map((p) => p.path).sort()).toEqual([
      'limits.headersTimeout',
      'limits.maxConnections',
      'limits.replayBudget',
    ]);
    expect(problems.find((p) => p.path === 'limits.replayBudget')?.message).toMatch(/not a size/);
  });

  it('R10: connections defaults to 128 and timeouts.queue to 5s; the global timeouts.queue applies unless the account sets its own', () => {
    const plain = firstAccount(parse(oneAccount()));
    expect(plain.connections).toBe(128);
    expect(plain.timeouts.queueMs).toBe(5_000);
    const tuned = parse({
      ...oneAccount(OAUTH2, { connections: 8, timeouts: { queue: '2s' } }),
      timeouts: { queue: '9s' },
    });
    expect(firstAccount(tuned).connections).toBe(8);
    expect(firstAccount(tuned).timeouts.queueMs).toBe(2_000);
    expect(firstAccount(parse({ ...oneAccount(), timeouts: { queue: '9s' } })).timeouts.queueMs).toBe(9_000);
    expect(problemsOf(() => parse(oneAccount(OAUTH2, { connections: 0 }))).map((p) => p.path)).toEqual([
      'accounts.crm.connections',
    ]);
  });
});

describe('§2, §8 validation problems', () => {
  it('§2: a bad URL is reported as accounts.crm.auth.tokenUrl: not a URL', () => {
    const problems = problemsOf(() => parse(oneAccount({ ...OAUTH2, tokenUrl: 'auth.crm.example/token' })));
    expect(problems).toHaveLength(1);
    expect(problems[0]?.path).toBe('accounts.crm.auth.tokenUrl');
    expect(problems[0]?.message).toMatch(/^not a URL/);
    // The CLI prints the error's message: one `path: message` line per problem.
    expect(() => parse(oneAccount({ ...OAUTH2, tokenUrl: 'x' }))).toThrow(/^accounts\.crm\.auth\.tokenUrl: not a URL/);
  });

  it('§2: a non-http URL (ftp:) is not a URL for an upstream', () => {
    const problems = problemsOf(() => parse({ accounts: { crm: { upstream: 'ftp://files.example', auth: OAUTH2 } } }));
    expect(problems).toEqual([
      { path: 'accounts.crm.upstream', message: expect.stringMatching(/^not a URL/) as string },
    ]);
  });

  it('§2: a typo in a key is a problem that names the path and the key', () => {
    const top = problemsOf(() => parse({ ...oneAccount(), listn: { port: 1 } }));
    expect(top).toEqual([{ path: '(root)', message: 'unknown key "listn"; did you mean "listen"?' }]);
    const refresh = problemsOf(() => parse(oneAccount(OAUTH2, { refresh: { minIntervall: '5s' } })));
    expect(refresh).toEqual([
      { path: 'accounts.crm.refresh', message: 'unknown key "minIntervall"; did you mean "minInterval"?' },
    ]);
    const auth = problemsOf(() => parse(oneAccount({ ...OAUTH2, clientSecretFlie: '/x' })));
    expect(auth).toEqual([
      { path: 'accounts.crm.auth', message: 'unknown key "clientSecretFlie"; did you mean "clientSecretFile"?' },
    ]);
  });

  it('§2: an unknown auth.flow is reported at accounts.crm.auth.flow (the path is not doubled)', () => {
    // BUG: load.ts zodProblems appends the discriminator to a path that already ends with it.
    const problems = problemsOf(() => parse(oneAccount({ ...OAUTH2, flow: 'oauth' })));
    expect(problems.map((p) => p.path)).toEqual(['accounts.crm.auth.flow']);
  });

  it('§8: several problems are reported at once, each with its own path', () => {
    const problems = problemsOf(() =>
      parse({
        listen: { host: '127.0.0.1', port: 70_000 },
        refresh: { timeout: 'forever' },
        accounts: {
          crm: { upstream: 'not a url', auth: { ...OAUTH2, tokenUrl: 'nope', scope: '${UNSET_SCOPE}' } },
        },
      }),
    );
    const paths = problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'accounts.crm.auth.scope',
        'refresh.timeout',
        'accounts.crm.upstream',
        'accounts.crm.auth.tokenUrl',
      ]),
    );
    expect(paths.some((path) => path.startsWith('listen'))).toBe(true);
    expect(problems.length).toBeGreaterThanOrEqual(5);
  });

  it('§8: cross-field problems (defaults, ports, prefixes, CIDRs) are all reported together', () => {
    const problems = problemsOf(() =>
      parse({
        inbound: { allow: ['not-an-ip'] },
        accounts: {
          a: { upstream: 'https://a.example', default: true, route: { port: 8081, pathPrefix: '/x' }, auth: OAUTH2 },
          b: { upstream: 'https://b.example', default: true, route: { port: 8081, pathPrefix: '/x' }, auth: OAUTH2 },
        },
      }),
    );
    expect(problems.map((p) => p.path).sort()).toEqual(
      ['accounts.b.default', 'accounts.b.route.pathPrefix', 'accounts.b.route.port', 'inbound.allow.0'].sort(),
    );
  });

  describe('§3 configuration', () => {
    it('§3: password and passwordFile both set is a problem', () => {
      const passwordFile = tempFile('password', randomSecret());
      const problems = problemsOf(() => parse(oneAccount({ ...SESSION, password: 'inline', passwordFile })));
      expect(problems).toEqual([
        { path: 'accounts.crm.auth.password', message: expect.stringMatching(/not both/) as string },
      ]);
    });

    it('§3: a passwordFile that does not exist is a problem at ...passwordFile', () => {
      const { password: _unused, ...noPassword } = SESSION;
      const missing = join(dir, 'does-not-exist');
      const problems = problemsOf(() => parse(oneAccount({ ...noPassword, passwordFile: missing })));
      expect(problems).toEqual([
        { path: 'accounts.crm.auth.passwordFile', message: expect.stringContaining(missing) as string },
      ]);
    });

    it('§3: a session account without any password is a problem', () => {
      const { password: _unused, ...noPassword } = SESSION;
      expect(problemsOf(() => parse(oneAccount(noPassword))).map((p) => p.path)).toEqual([
        'accounts.crm.auth.password',
      ]);
    });

    it('§3: grant password without username is a problem at ...auth.username', () => {
      const problems = problemsOf(() => parse(oneAccount({ ...OAUTH2, grant: 'password', password: 'pw' })));
      expect(problems).toEqual([
        { path: 'accounts.crm.auth.username', message: expect.stringMatching(/required for grant password/) as string },
      ]);
    });

    it('§3: grant refresh_token without a refresh token is a problem', () => {
      const problems = problemsOf(() => parse(oneAccount({ ...OAUTH2, grant: 'refresh_token' })));
      expect(problems.map((p) => p.path)).toEqual(['accounts.crm.auth.refreshToken']);
    });

    it('§3: two default accounts are a problem at the second one', () => {
      const problems = problemsOf(() =>
        parse({
          accounts: {
            a: { upstream: 'https://a.example', default: true, auth: OAUTH2 },
            b: { upstream: 'https://b.example', default: true, auth: OAUTH2 },
          },
        }),
      );
      expect(problems).toEqual([{ path: 'accounts.b.default', message: expect.stringContaining('a') as string }]);
    });

    it('§3: two accounts on one route port, or on the listen port, are problems', () => {
      const problems = problemsOf(() =>
        parse({
          accounts: {
            a: { upstream: 'https://a.example', route: { port: 8081 }, auth: OAUTH2 },
            b: { upstream: 'https://b.example', route: { port: 8081 }, auth: OAUTH2 },
            c: { upstream: 'https://c.example', route: { port: 8080 }, auth: OAUTH2 },
          },
        }),
      );
      expect(problems).toEqual([
        { path: 'accounts.b.route.port', message: expect.stringContaining('accounts.a.route.port') as string },
        { path: 'accounts.c.route.port', message: expect.stringContaining('listen.port') as string },
      ]);
    });

    it('§3: two accounts with one pathPrefix are a problem', () => {
      const problems = problemsOf(() =>
        parse({
          accounts: {
            a: { upstream: 'https://a.example', route: { pathPrefix: '/crm' }, auth: OAUTH2 },
            b: { upstream: 'https://b.example', route: { pathPrefix: '/crm' }, auth: OAUTH2 },
          },
        }),
      );
      expect(problems).toEqual([
        { path: 'accounts.b.route.pathPrefix', message: expect.stringContaining('/crm') as string },
      ]);
    });

    it('§3: a pathPrefix must start with "/" and not end with "/"', () => {
      expect(problemsOf(() => parse(oneAccount(OAUTH2, { route: { pathPrefix: 'crm' } }))).map((p) => p.path)).toEqual([
        'accounts.crm.route.pathPrefix',
      ]);
      expect(
        problemsOf(() => parse(oneAccount(OAUTH2, { route: { pathPrefix: '/crm/' } }))).map((p) => p.path),
      ).toEqual(['accounts.crm.route.pathPrefix']);
    });

    it('S1: inbound.hosts and inbound.origins default to none and keep what is written', () => {
      expect(parse(oneAccount()).inbound).toMatchObject({ hosts: [], origins: [] });
      const config = parse({
        ...oneAccount(),
        inbound: {
          hosts: ['sidecar.tools.svc', 'my-laptop', 'gw.'],
          origins: ['https://app.example', 'http://[::1]:3000/'],
        },
      });
      expect(config.inbound).toMatchObject({
        hosts: ['sidecar.tools.svc', 'my-laptop', 'gw.'],
        origins: ['https://app.example', 'http://[::1]:3000/'],
      });
    });

    it('S1: an inbound.hosts entry with a scheme, port or path, or an inbound.origins entry with a path, is a problem at its path saying how to write it', () => {
      const problems = problemsOf(() =>
        parse({
          ...oneAccount(),
          inbound: {
            hosts: ['ok.example', 'http://x.example', 'x.example:8080', 'x.example/p', '', 'a..b', 'x'.repeat(254)],
            origins: [
              'https://app.example',
              'app.example',
              'https://app.example/path',
              'https://app.example?x',
              'null',
            ],
          },
        }),
      );
      expect(problems.map((p) => p.path)).toEqual([
        'inbound.hosts.1',
        'inbound.hosts.2',
        'inbound.hosts.3',
        'inbound.hosts.4',
        'inbound.hosts.5',
        'inbound.hosts.6',
        'inbound.origins.1',
        'inbound.origins.2',
        'inbound.origins.3',
        'inbound.origins.4',
      ]);
      expect(problems[0]?.message).toBe(
        'not a host name: "http://x.example" (write the name alone, without scheme, port or path, e.g. bearer-sidecar.tools.svc)',
      );
      expect(problems[6]?.message).toContain('scheme://host[:port]');
    });

    it('§3: a bad inbound.allow entry is a problem at inbound.allow.N', () => {
      const problems = problemsOf(() =>
        parse({ ...oneAccount(), inbound: { allow: ['10.0.0.0/33', '127.0.0.0/8', 'localhost', '::1/129'] } }),
      );
      expect(problems.map((p) => p.path)).toEqual(['inbound.allow.0', 'inbound.allow.2', 'inbound.allow.3']);
    });

    it('§3: an inbound.allow entry with an empty prefix length ("10.0.0.0/") is a problem, not a /0 that lets every address in', () => {
      // BUG: resolve.ts buildAllowList turns Number('') into prefix 0, so 10.0.0.0/ allows 0.0.0.0/0.
      const problems = problemsOf(() => parse({ ...oneAccount(), inbound: { allow: ['10.0.0.0/'] } }));
      expect(problems.map((p) => p.path)).toEqual(['inbound.allow.0']);
    });

    it('§3: an inbound.allow entry with extra text after the prefix ("10.0.0.0/8/16") is a problem', () => {
      // BUG: buildAllowList keeps only the second "/"-separated part and ignores the rest.
      const problems = problemsOf(() => parse({ ...oneAccount(), inbound: { allow: ['10.0.0.0/8/16'] } }));
      expect(problems.map((p) => p.path)).toEqual(['inbound.allow.0']);
    });

    it('§3: a bare address in inbound.allow is a single host (/32, /128)', () => {
      const config = parse({ ...oneAccount(), inbound: { allow: ['10.1.2.3', '::1'] } });
      expect(config.inbound.allow.check('10.1.2.3', 'ipv4')).toBe(true);
      expect(config.inbound.allow.check('10.1.2.4', 'ipv4')).toBe(false);
      expect(config.inbound.allow.check('::1', 'ipv6')).toBe(true);
    });

    it('§3: account names use letters, digits, "_", "." and "-"', () => {
      expect(
        problemsOf(() => parse({ accounts: { 'bad name': { upstream: 'https://a.example', auth: OAUTH2 } } })).map(
          (p) => p.path,
        ),
      ).toEqual(['accounts.bad name']);
    });

    it('§3: no accounts at all is a problem', () => {
      expect(problemsOf(() => parse({ accounts: {} }))).toEqual([
        { path: 'accounts', message: expect.any(String) as string },
      ]);
    });
  });
});

describe('§2 files', () => {
  const yamlSecret = randomSecret();
  const yamlSecretFile = tempFile('yaml-client-secret', `${yamlSecret}\n`);

  it('§2: a YAML config file loads', () => {
    const file = tempFile(
      'config.yaml',
      [
        'listen: { host: 127.0.0.1, port: 18080 }',
        'shutdownTimeout: 5s',
        'accounts:',
        '  crm:',
        '    upstream: https://api.crm.example/v2',
        '    route: { pathPrefix: /crm }',
        '    auth:',
        '      flow: oauth2',
        '      tokenUrl: https://auth.crm.example/token',
        '      clientId: ${CRM_CLIENT_ID}',
        `      clientSecretFile: ${yamlSecretFile}`,
        '      scope: "read write"',
        '      extraParams: { grant_type: null, resource: api }',
        '',
      ].join('\n'),
    );
    const config = loadConfig({ file, env: { CRM_CLIENT_ID: 'my-app' } });
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 18080 });
    expect(config.shutdownTimeoutMs).toBe(5_000);
    const account = firstAccount(config);
    expect(account.route).toEqual({ pathPrefix: '/crm' });
    const auth = account.auth as OAuth2Auth;
    expect(auth.clientId).toBe('my-app');
    expect(auth.scope).toBe('read write');
    expect(auth.extraParams).toEqual({ grant_type: null, resource: 'api' });
    expect(auth.clientSecret).toMatchObject({ kind: 'file', path: yamlSecretFile });
  });

  it('§2: a JSON config file loads', () => {
    const passwordFile = tempFile('session-password', `${randomSecret()}\r\n`);
    const file = tempFile(
      'config.json',
      JSON.stringify({
        admin: { port: 19464 },
        accounts: {
          'fleet-a': {
            upstream: 'https://api.example.net',
            default: true,
            auth: {
              flow: 'session',
              loginUrl: 'https://api.example.net/auth/login',
              username: 'fleet',
              passwordFile,
              accountId: 42,
            },
            refresh: { at: 0.7, retryOn: [401, 403, 419] },
          },
        },
      }),
    );
    const config = loadConfig({ file, env: {} });
    expect(config.admin).toMatchObject({ host: '127.0.0.1', port: 19464 });
    const account = firstAccount(config);
    expect(account.name).toBe('fleet-a');
    expect(account.isDefault).toBe(true);
    expect((account.auth as SessionAuth).accountId).toBe(42);
    expect(account.refresh.at).toBe(0.7);
    expect(account.refresh.retryOn).toEqual([401, 403, 419]);
  });

  it('§2: a config file that cannot be read, or is not YAML, is a problem at config', () => {
    expect(problemsOf(() => loadConfig({ file: join(dir, 'nope.yaml'), env: {} })).map((p) => p.path)).toEqual([
      'config',
    ]);
    const broken = tempFile('broken.yaml', 'accounts: [unclosed\n  - : :\n');
    expect(problemsOf(() => loadConfig({ file: broken, env: {} })).map((p) => p.path)).toEqual(['config']);
    const scalar = tempFile('scalar.yaml', 'just a string\n');
    expect(problemsOf(() => loadConfig({ file: scalar, env: {} })).map((p) => p.path)).toEqual(['config']);
  });

  it('§2: a config file together with quick-mode flags (--upstream) is a problem', () => {
    const file = tempFile(
      'config-with-flags.yaml',
      `accounts:\n  crm:\n    upstream: https://api.crm.example\n    auth:\n      flow: oauth2\n      tokenUrl: https://a.example/t\n      clientId: x\n`,
    );
    const problems = problemsOf(() => loadConfig({ file, flags: { upstream: 'http://127.0.0.1:9999' }, env: {} }));
    expect(problems).toEqual([{ path: 'flags', message: expect.stringContaining('--upstream') as string }]);
  });

  it("§2: --listen 0.0.0.0:9000 overrides the file's listen; --admin PORT keeps the default host", () => {
    const file = tempFile(
      'config-listen.yaml',
      `listen: { host: 127.0.0.1, port: 18081 }\naccounts:\n  crm:\n    upstream: https://api.crm.example\n    auth:\n      flow: oauth2\n      tokenUrl: https://a.example/t\n      clientId: x\n`,
    );
    const config = loadConfig({ file, flags: { listen: '0.0.0.0:9000', admin: '9465' }, env: {} });
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(config.admin).toMatchObject({ host: '127.0.0.1', port: 9465 });
  });

  it('§2: a --listen that is not [HOST:]PORT is a problem at its flag', () => {
    const problems = problemsOf(() => parseConfig(oneAccount(), { env: {}, flags: { listen: 'localhost:http' } }));
    expect(problems.map((p) => p.path)).toEqual(['--listen (BEARER_SIDECAR_LISTEN)']);
  });

  it('§2: no config file and no --upstream is a problem at config', () => {
    expect(problemsOf(() => loadConfig({ env: {} })).map((p) => p.path)).toEqual(['config']);
  });
});

describe('§2 quick mode', () => {
  it('§2: envTwin maps a flag to BEARER_SIDECAR_*', () => {
    expect(envTwin('upstream')).toBe('BEARER_SIDECAR_UPSTREAM');
    expect(envTwin('client-secret-file')).toBe('BEARER_SIDECAR_CLIENT_SECRET_FILE');
    expect(envTwin('config')).toBe('BEARER_SIDECAR_CONFIG');
  });

  it('§2: withEnvTwins fills flags from env twins; a given flag wins; an empty env var is ignored', () => {
    const merged = withEnvTwins(
      { upstream: 'http://flag.example' },
      {
        BEARER_SIDECAR_UPSTREAM: 'http://env.example',
        BEARER_SIDECAR_TOKEN_URL: 'http://t.example',
        BEARER_SIDECAR_SCOPE: '',
      },
    );
    expect(merged.upstream).toBe('http://flag.example');
    expect(merged['token-url']).toBe('http://t.example');
    expect(merged.scope).toBeUndefined();
  });

  it('§2: parseHostPort reads PORT, HOST:PORT and [IPv6]:PORT', () => {
    expect(parseHostPort('9000')).toEqual({ port: 9000 });
    expect(parseHostPort('0.0.0.0:9000')).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(parseHostPort('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(parseHostPort('localhost:8080')).toEqual({ host: 'localhost', port: 8080 });
    expect(parseHostPort('nonsense')).toEqual({ port: 'nonsense' });
  });

  it('§2: quick mode builds one default oauth2 account named default', () => {
    const raw = quickModeConfig({
      upstream: 'https://api.crm.example/v2',
      'token-url': 'https://auth.crm.example/token',
      'client-id': 'my-app',
      'client-secret-file': clientSecretFile,
      scope: 'read',
    });
    const config = parse(raw);
    const account = firstAccount(config);
    expect(config.accounts).toHaveLength(1);
    expect(account.name).toBe('default');
    expect(account.isDefault).toBe(true);
    expect(account.auth).toMatchObject({
      flow: 'oauth2',
      tokenUrl: 'https://auth.crm.example/token',
      clientId: 'my-app',
      scope: 'read',
    });
    expect((account.auth as OAuth2Auth).clientSecret).toMatchObject({ kind: 'file', path: clientSecretFile });
  });

  it('§2: quick mode with --login-url is the session flow, --account-id carried as given', () => {
    const passwordFile = tempFile('quick-password', randomSecret());
    const raw = quickModeConfig({
      upstream: 'https://api.example.net',
      'login-url': 'https://api.example.net/auth/login',
      'refresh-url': 'https://api.example.net/auth/refresh',
      username: 'fleet',
      'password-file': passwordFile,
      'account-id': '42',
    });
    const auth = firstAccount(parse(raw)).auth as SessionAuth;
    expect(auth.flow).toBe('session');
    expect(auth.accountId).toBe('42');
    expect(auth.password).toMatchObject({ kind: 'file', path: passwordFile });
  });

  it('§2: loadConfig runs quick mode from env twins alone, and --listen applies there too', () => {
    const env = {
      BEARER_SIDECAR_UPSTREAM: 'https://api.crm.example',
      BEARER_SIDECAR_TOKEN_URL: 'https://auth.crm.example/token',
      BEARER_SIDECAR_CLIENT_ID: 'my-app',
      BEARER_SIDECAR_LISTEN: '0.0.0.0:9000',
    };
    const config = loadConfig({ flags: withEnvTwins({}, env), env });
    expect(firstAccount(config).name).toBe('default');
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 9000 });
  });

  it('§2: quick mode problems name the flag and its environment twin', () => {
    const problems = problemsOf(() =>
      loadConfig({
        flags: { upstream: 'https://api.crm.example', 'token-url': 'not-a-url', 'client-id': 'x' },
        env: {},
      }),
    );
    expect(problems.map((p) => p.path)).toEqual(['--token-url (BEARER_SIDECAR_TOKEN_URL)']);
  });
});

describe('F6, §8 secrets', () => {
  it('F6: secrets in the resolved config print as [redacted] via JSON.stringify, String and util.inspect', async () => {
    const password = randomSecret();
    const clientSecret = randomSecret();
    const refreshToken = randomSecret();
    const apiKey = randomSecret();
    const config = parse(
      {
        inbound: { apiKeys: ['${API_KEY}'] },
        accounts: {
          fleet: { upstream: 'https://api.example.net', auth: { ...SESSION, password: '${FLEET_PASSWORD}' } },
          crm: {
            upstream: 'https://api.crm.example',
            auth: { ...OAUTH2, clientSecretFile: undefined, clientSecret, grant: 'refresh_token', refreshToken },
          },
        },
      },
      { FLEET_PASSWORD: password, API_KEY: apiKey },
    );
    const secrets = [password, clientSecret, refreshToken, apiKey];
    const renderings = [
      JSON.stringify(config),
      inspect(config, { depth: Number.POSITIVE_INFINITY }),
      String(config.inbound.apiKeys[0]),
    ];
    for (const text of renderings) {
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
    expect(JSON.stringify(config)).toContain('[redacted]');
    expect(inspect(config, { depth: Number.POSITIVE_INFINITY })).toContain('[redacted]');

    // The values are still there for the wire, behind an explicit reveal().
    const fleet = config.accounts.find((a) => a.name === 'fleet')?.auth as SessionAuth;
    const crm = config.accounts.find((a) => a.name === 'crm')?.auth as OAuth2Auth;
    expect((await readSecret(fleet.password)).reveal()).toBe(password);
    if (crm.clientSecret === undefined || crm.refreshToken === undefined) throw new Error('secrets missing');
    expect((await readSecret(crm.clientSecret)).reveal()).toBe(clientSecret);
    expect((await readSecret(crm.refreshToken)).reveal()).toBe(refreshToken);
    expect(config.inbound.apiKeys[0]?.reveal()).toBe(apiKey);
  });

  it('F6: a Secret is [redacted] in a template string, String(), JSON and inspect', () => {
    const value = randomSecret();
    const secret = new Secret(value);
    expect(`${secret}`).toBe('[redacted]');
    expect(String(secret)).toBe('[redacted]');
    expect(JSON.stringify({ secret })).toBe('{"secret":"[redacted]"}');
    expect(inspect({ secret })).not.toContain(value);
    expect(secret.reveal()).toBe(value);
    expect(secret.fingerprint()).toMatch(/^[0-9a-f]{8}$/);
  });

  it('§8: a secret read from a file loses trailing \\r and \\n only, not spaces or inner newlines', async () => {
    const value = `  ${randomSecret()}\n${randomSecret()} `;
    const file = tempFile('spaces', `${value}\r\n\n\r\n`);
    expect((await readSecret(new SecretFile(file))).reveal()).toBe(value);
  });

  it('§8: a secret file with no good value yet that cannot be read is an error at use (a rejected login), not a crash', async () => {
    await expect(readSecret(new SecretFile(join(dir, 'never-there')))).rejects.toThrow(
      /cannot read .*never-there \(ENOENT\)/,
    );
  });

  describe('§3 configuration', () => {
    it('§3: a secret file is read again at each use, so a rotated Secret takes effect without a restart', async () => {
      const first = randomSecret();
      const second = randomSecret();
      const file = tempFile('rotating', `${first}\n`);
      const source = new SecretFile(file);
      expect((await readSecret(source)).reveal()).toBe(first);
      writeFileSync(file, `${second}\n`);
      expect((await readSecret(source)).reveal()).toBe(second);
    });
  });

  describe('R6 empty secrets', () => {
    it('R6: a secret file that disappears after start keeps the value read at start-up', async () => {
      const value = randomSecret();
      const file = tempFile('vanishing', value);
      const config = parse(oneAccount({ ...SESSION, password: undefined, passwordFile: file }));
      rmSync(file);
      expect((await readSecret((firstAccount(config).auth as SessionAuth).password)).reveal()).toBe(value);
    });
  });
});

describe('H1 Redis shapes in store', () => {
  const store = (fields: Record<string, unknown>) => parse({ ...oneAccount(), store: { type: 'redis', ...fields } });

  it('H1: sentinels with name, or cluster, or url are each a Redis store; with username and passwordFile', () => {
    const passwordFile = tempFile('redis-password', `${randomSecret()}\n`);
    expect(store({ sentinels: ['10.0.0.1:26379', '[::1]:26380'], name: 'mymaster' }).store).toMatchObject({
      type: 'redis',
      sentinels: ['10.0.0.1:26379', '[::1]:26380'],
      name: 'mymaster',
    });
    expect(store({ cluster: ['redis-0:7000'], username: 'bs', passwordFile }).store).toMatchObject({
      cluster: ['redis-0:7000'],
      username: 'bs',
      passwordFile,
    });
    expect(store({ url: 'redis://r:6379' }).store).toMatchObject({ url: 'redis://r:6379' });
  });

  it('H1: exactly one of url, sentinels and cluster; sentinels need the master name; addresses are host:port', () => {
    expect(problemsOf(() => store({})).map((p) => p.path)).toEqual(['store']);
    expect(problemsOf(() => store({ url: 'redis://r', cluster: ['r:7000'] })).map((p) => p.path)).toEqual(['store']);
    expect(problemsOf(() => store({ sentinels: ['s:26379'] })).map((p) => p.path)).toEqual(['store.name']);
    expect(problemsOf(() => store({ cluster: ['r:7000'], name: 'm' })).map((p) => p.path)).toEqual(['store.name']);
    expect(problemsOf(() => store({ cluster: ['r'] })).map((p) => p.path)).toEqual(['store.cluster.0']);
    expect(problemsOf(() => store({ url: 'redis://r', passwordFile: join(dir, 'missing') }))[0]?.path).toBe(
      'store.passwordFile',
    );
  });

  it('H1: store.tls names files that must be readable, and a client certificate comes with its key', () => {
    const pem = tempFile('redis-ca.pem', '-----BEGIN CERTIFICATE-----\n');
    expect(store({ url: 'redis://r:6379', tls: { caFile: pem, certFile: pem, keyFile: pem } }).store).toMatchObject({
      tls: { caFile: pem, certFile: pem, keyFile: pem },
    });
    expect(problemsOf(() => store({ url: 'redis://r', tls: { certFile: pem } })).map((p) => p.message)).toEqual([
      'give certFile and keyFile together (a client certificate and its key)',
    ]);
    expect(problemsOf(() => store({ url: 'redis://r', tls: { caFile: join(dir, 'missing.pem') } }))[0]?.path).toBe(
      'store.tls.caFile',
    );
    expect(problemsOf(() => store({ url: 'redis://r', tls: { caFile: pem, crtFile: pem } }))[0]?.message).toMatch(
      /certFile/,
    );
  });
});

describe('E1 client authentication settings', () => {
  const base = { flow: 'oauth2', tokenUrl: 'https://idp.example/token', clientId: 'svc' } as const;
  const keyFile = () =>
    tempFile(
      'key.pem',
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    );
  const messages = (auth: Record<string, unknown>) =>
    problemsOf(() => parse(oneAccount(auth))).map((problem) => `${problem.path}: ${problem.message}`);

  it('E1: private_key_jwt needs a readable private key that fits signingAlg; the key file is watched like a secret file', () => {
    const file = keyFile();
    const auth = firstAccount(parse(oneAccount({ ...base, clientAuth: 'private_key_jwt', privateKeyFile: file }))).auth;
    expect(secretFilesOf(auth).map((watched) => watched.path)).toEqual([file]);
    expect(messages({ ...base, clientAuth: 'private_key_jwt' })).toEqual([
      'accounts.crm.auth.privateKeyFile: required for clientAuth private_key_jwt: a PKCS#8 PEM or a private JWK file',
    ]);
    expect(messages({ ...base, clientAuth: 'private_key_jwt', privateKeyFile: file, signingAlg: 'RS256' })[0]).toMatch(
      /^accounts\.crm\.auth\.signingAlg: private key .*key\.pem: signingAlg RS256 does not fit a ec key/,
    );
    expect(messages({ ...base, clientAuth: 'private_key_jwt', privateKeyFile: file, clientSecret: 'x' })).toEqual([
      'accounts.crm.auth.clientSecret: not used with clientAuth private_key_jwt: remove it',
    ]);
  });

  it('E1: client_secret_jwt needs the client secret and an HS algorithm; none sends no secret; key settings belong to the JWT methods only', () => {
    expect(messages({ ...base, clientAuth: 'client_secret_jwt' })).toEqual([
      'accounts.crm.auth.clientSecret: required for clientAuth client_secret_jwt (clientSecret or clientSecretFile)',
    ]);
    expect(messages({ ...base, clientAuth: 'client_secret_jwt', clientSecret: 's', signingAlg: 'ES256' })).toEqual([
      'accounts.crm.auth.signingAlg: client_secret_jwt signs with HS256, HS384 or HS512',
    ]);
    expect(messages({ ...base, clientAuth: 'none', clientSecret: 's' })).toEqual([
      'accounts.crm.auth.clientSecret: clientAuth none sends no client authentication: remove the secret, or use basic, body or client_secret_jwt',
    ]);
    expect(messages({ ...base, clientAuth: 'basic', clientSecret: 's', keyId: 'k' })).toEqual([
      'accounts.crm.auth.keyId: only used with clientAuth private_key_jwt or client_secret_jwt (it is basic)',
    ]);
    expect(
      messages({
        flow: 'oauth2',
        tokenUrl: 'https://idp.example/token',
        grant: 'password',
        username: 'u',
        password: 'p',
        clientAuth: 'none',
      }),
    ).toEqual(['accounts.crm.auth.clientId: required for clientAuth none']);
  });
});

describe('S4 admin access settings', () => {
  it('S4: admin.allow is open to any address when its ranges together cover all of IPv4 or all of IPv6, however they are cut', () => {
    const open = (allow: string[]) => parse({ ...oneAccount(), admin: { port: 9464, allow } }).admin.allowsAnyAddress;
    expect(open(['0.0.0.0/1', '128.0.0.0/1'])).toBe(true);
    expect(open(['::/1', '8000::/1'])).toBe(true);
    expect(open(['0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/1', '10.0.0.0/8'])).toBe(true);
    expect(open(['0.0.0.0/1', '128.0.0.0/2'])).toBe(false);
    expect(open(['0.0.0.0/1', '::/1'])).toBe(false);
    expect(open(['10.0.0.0/8', '2001:db8::/32'])).toBe(false);
  });

  it.each(['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])(
    'S4: an admin port bound to a loopback address (%s) gives no exposure warning',
    (host) => {
      expect(adminExposureWarning({ host, allowsAnyAddress: true, apiKeys: [] })).toBeUndefined();
      expect(adminExposureWarning({ host: '0.0.0.0', allowsAnyAddress: true, apiKeys: [] })).toBeDefined();
    },
  );

  it('S4: admin.allow defaults to any address (IPv4 and IPv6), admin.apiKeys to none', () => {
    const config = parse(oneAccount());
    expect(config.admin.allowsAnyAddress).toBe(true);
    expect(config.admin.allow.check('203.0.113.9', 'ipv4')).toBe(true);
    expect(config.admin.allow.check('2001:db8::1', 'ipv6')).toBe(true);
    expect(config.admin.apiKeys).toEqual([]);
    const narrowed = parse({ ...oneAccount(), admin: { port: 9464, allow: ['10.0.0.0/8'] } });
    expect(narrowed.admin.allowsAnyAddress).toBe(false);
    expect(narrowed.admin.allow.check('203.0.113.9', 'ipv4')).toBe(false);
  });

  it('S4: admin.apiKeyFiles add their keys, one a line; an unreadable file is a problem at its path', () => {
    const [first, second] = [randomSecret(), randomSecret()];
    const file = tempFile('admin-keys', `${first}\n\n${second}\r\n`);
    const config = parse({ ...oneAccount(), admin: { port: 9464, apiKeys: ['inline'], apiKeyFiles: [file] } });
    expect(config.admin.apiKeys.map((key) => key.reveal())).toEqual(['inline', first, second]);
    const problems = problemsOf(() =>
      parse({ ...oneAccount(), admin: { port: 9464, apiKeyFiles: [join(dir, 'missing')] } }),
    );
    expect(problems.map((problem) => problem.path)).toEqual(['admin.apiKeyFiles.0']);
  });
});

describe('S2 trusted proxies', () => {
  it.each([
    ['10.0.*', 'did you mean 10.0.0.0/16?'],
    ['10.0.0.0/33', 'the prefix is at most /32'],
    ['localhost', 'for loopback write 127.0.0.0/8 and ::1/128'],
    ['proxy.internal', 'host names are not allowed'],
  ])('S2: an inbound.trustedProxies entry %j is a problem with the nearest fix (%s)', (entry, fix) => {
    const problems = problemsOf(() => parse({ ...oneAccount(), inbound: { trustedProxies: ['10.1.0.0/16', entry] } }));
    expect(problems).toHaveLength(1);
    expect(problems[0]?.path).toBe('inbound.trustedProxies.1');
    expect(problems[0]?.message).toContain(fix);
  });
});

describe('S4 admin access settings in a file', () => {
  it("S4: --admin sets the admin address only; the file's admin.allow and admin.apiKeys stay", () => {
    const key = randomSecret();
    const file = tempFile(
      'config-admin-keys.yaml',
      `admin: { host: 0.0.0.0, port: 19464, allow: [10.0.0.0/8], apiKeys: [${key}] }\naccounts:\n  crm:\n    upstream: https://api.crm.example\n    auth:\n      flow: oauth2\n      tokenUrl: https://a.example/t\n      clientId: x\n`,
    );
    const config = loadConfig({ file, flags: { admin: '9465' }, env: {} });
    expect(config.admin).toMatchObject({ host: '127.0.0.1', port: 9465, allowsAnyAddress: false });
    expect(config.admin.apiKeys.map((secret) => secret.reveal())).toEqual([key]);
  });

  it("S4: admin.apiKeyFiles and inbound.apiKeyFiles are relative to the config file's directory", () => {
    const [adminKey, dataKey] = [randomSecret(), randomSecret()];
    const adminFile = basename(tempFile('admin-keys.txt', `${adminKey}\n`));
    const dataFile = basename(tempFile('data-keys.txt', `${dataKey}\n`));
    const file = tempFile(
      'config-key-files.yaml',
      `admin: { port: 19464, apiKeyFiles: [${adminFile}] }\ninbound: { apiKeyFiles: [${dataFile}] }\naccounts:\n  crm:\n    upstream: https://api.crm.example\n    auth:\n      flow: oauth2\n      tokenUrl: https://a.example/t\n      clientId: x\n`,
    );
    const config = loadConfig({ file, env: {} });
    expect(config.admin.apiKeys.map((secret) => secret.reveal())).toEqual([adminKey]);
    expect(config.inbound.apiKeys.map((secret) => secret.reveal())).toEqual([dataKey]);
  });
});
