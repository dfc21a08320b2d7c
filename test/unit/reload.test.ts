import { createServer } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { ConfigReloader, RELOAD_FAILED } from '../../src/app-reload.js';
import type { Sidecar } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { diffConfigs } from '../../src/config/reload-diff.js';
import { generatedSecret, useHarness } from '../helpers/harness.js';

const harness = useHarness();

function sessionAccount(loginUrl: string, password: string, extra: Record<string, unknown> = {}) {
  return {
    upstream: 'http://127.0.0.1:9/api',
    auth: { flow: 'session', loginUrl, username: 'u', password },
    ...extra,
  };
}

describe('H2 live reload: what changed, and whose chain goes on', () => {
  it('H2: the reload diff names accounts added, removed and changed with the settings that changed, never a value', () => {
    const [oldPassword, newPassword] = [generatedSecret('pw'), generatedSecret('pw')];
    const login = 'http://127.0.0.1:9/login';
    const running = parseConfig({
      accounts: {
        a: sessionAccount(login, oldPassword, { default: true }),
        b: sessionAccount(login, oldPassword),
        gone: sessionAccount(login, oldPassword),
      },
    });
    const next = parseConfig({
      limits: { maxConnections: 10 },
      accounts: {
        a: sessionAccount(login, oldPassword, { default: true }),
        b: sessionAccount(login, newPassword, { upstream: 'http://127.0.0.1:9/v2', connections: 4 }),
        added: sessionAccount(login, oldPassword),
      },
    });
    const changes = diffConfigs(running, next);
    expect(changes).toEqual({
      refusal: undefined,
      added: ['added'],
      removed: ['gone'],
      changed: [{ account: 'b', parts: ['upstream', 'auth', 'connections'] }],
      settings: ['limits'],
    });
    expect(JSON.stringify(changes)).not.toContain(newPassword);
    expect(diffConfigs(running, running)).toEqual({
      refusal: undefined,
      added: [],
      removed: [],
      changed: [],
      settings: [],
    });
  });

  it('H2: a changed store is refused with the reason that it needs a restart', () => {
    const dir = harness.tempDir('bs-reload-unit-');
    const accounts = { a: sessionAccount('http://127.0.0.1:9/login', 'p', { default: true }) };
    const changes = diffConfigs(
      parseConfig({ accounts }),
      parseConfig({ accounts, store: { type: 'file', path: `${dir}/state` } }),
    );
    expect(changes.refusal).toBe('store changed: a different token store needs a restart');
  });

  it('H2, H3: a changed tracing section is refused with the reason that it needs a restart', () => {
    const accounts = { a: sessionAccount('http://127.0.0.1:9/login', 'p', { default: true }) };
    const changes = diffConfigs(
      parseConfig({ accounts }),
      parseConfig({ accounts, tracing: { endpoint: 'http://127.0.0.1:4318' } }),
    );
    expect(changes.refusal).toBe('tracing changed: tracing is set up at start-up and needs a restart');
  });

  it('H2: a reload that throws while it is applied (a file gone between validation and use) is logged and counted, never a crash', async () => {
    const counted: string[] = [];
    const logged: Array<{ fields: Record<string, unknown>; msg: string }> = [];
    const sidecar = {
      start: async () => undefined,
      reload: async () => {
        throw new Error('ENOENT: no such file or directory, open /tls/ca.crt');
      },
      metrics: { configReload: (outcome: string) => counted.push(outcome) },
    } as unknown as Sidecar;
    const logger = {
      error: (fields: Record<string, unknown>, msg: string) => logged.push({ fields, msg }),
      info: () => undefined,
    } as unknown as ConstructorParameters<typeof ConfigReloader>[0]['logger'];
    const accounts = { a: sessionAccount('http://127.0.0.1:9/login', 'p', { default: true }) };
    const reloader = new ConfigReloader({ sidecar, load: () => parseConfig({ accounts }), logger });
    await expect(reloader.reload('SIGHUP')).resolves.toBeUndefined();
    expect(counted).toEqual(['rejected']);
    expect(logged.map((entry) => [entry.fields.trigger, entry.msg])).toEqual([['SIGHUP', RELOAD_FAILED]]);
  });

  it('H2: a changed refresh policy keeps the token (a new manager adopts the stored chain); a changed auth logs in anew', async () => {
    const { tokenServer, password } = await harness.sessionTokenServer();
    const raw = (changed: boolean) => {
      const creds = sessionAccount(tokenServer.loginUrl, password, { route: { pathPrefix: '/creds' } });
      // The token server ignores account_id: the login still succeeds, with other credentials.
      if (changed) Object.assign(creds.auth, { accountId: 7 });
      const policy = sessionAccount(tokenServer.loginUrl, password, { default: true });
      return { accounts: { policy: changed ? { ...policy, refresh: { at: 0.7 } } : policy, creds } };
    };
    const sidecar = await harness.sidecar(raw(false));
    expect(tokenServer.stats.logins).toBe(2);
    const before = sidecar.manager('policy')?.current()?.fingerprint;
    const credsBefore = sidecar.manager('creds')?.current()?.fingerprint;
    const next = parseConfig({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      ...raw(true),
    });
    const result = await sidecar.reload(next);
    expect(result.outcome === 'applied' && result.changes.changed).toEqual([
      { account: 'policy', parts: ['refresh'] },
      { account: 'creds', parts: ['auth'] },
    ]);
    await vi.waitFor(() => expect(sidecar.manager('creds')?.current()).toBeDefined());
    expect(sidecar.manager('creds')?.current()?.fingerprint).not.toBe(credsBefore);
    await sidecar.settled();
    expect(sidecar.manager('policy')?.current()?.fingerprint).toBe(before);
    // One login more: creds's; policy adopted its stored token.
    expect(tokenServer.stats.logins).toBe(3);
  });

  it('H2: a reload whose new address cannot be bound is refused and changes nothing', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    harness.defer(() => new Promise((resolve) => blocker.close(resolve)));
    const port = (blocker.address() as { port: number }).port;
    const { tokenServer, password } = await harness.sessionTokenServer();
    const accounts = { a: sessionAccount(tokenServer.loginUrl, password, { default: true }) };
    const sidecar = await harness.sidecar({ accounts });
    const dataUrl = sidecar.dataUrl();
    const result = await sidecar.reload(
      parseConfig({
        listen: { host: '127.0.0.1', port },
        admin: { host: '127.0.0.1', port: 0 },
        accounts: { ...accounts, b: sessionAccount(tokenServer.loginUrl, password) },
      }),
    );
    expect(result.outcome).toBe('rejected');
    expect(result.outcome === 'rejected' && result.reasons[0]).toMatch(/^cannot listen: .*EADDRINUSE/);
    expect(sidecar.dataUrl()).toBe(dataUrl);
    expect(sidecar.manager('b')).toBeUndefined();
    expect(sidecar.config.accounts.map((account) => account.name)).toEqual(['a']);
  });
});
