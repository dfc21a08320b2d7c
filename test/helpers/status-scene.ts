import { Sidecar } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { startSessionTokenServer, type SessionTokenServer } from '../../src/demo/session-token-server.js';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.js';
import { captureLogger } from './capture-logger.js';
import { FakeClock } from './fake-clock.js';
import { generatedSecret, issuedSecrets, recordingSend } from './harness.js';

const MINUTE = 60_000;

export interface StatusScene {
  sidecar: Sidecar;
  clock: FakeClock;
  /** Every secret of the run: passwords, and every token and refresh token issued. */
  secrets(): string[];
  /** Everything the sidecar logged (debug level). */
  logText(): string;
  close(): Promise<void>;
}

/**
 * An hour in the life of three accounts, on a fake clock over real sockets:
 * `fleet` is healthy (5 min tokens); `reports` falls into a refresh loop 40 minutes in (its
 * server starts issuing 1 s tokens); `billing` has a wrong password (login rejected).
 */
export async function startStatusScene(): Promise<StatusScene> {
  const clock = new FakeClock();
  const now = () => clock.now();
  const passwords = { fleet: generatedSecret('pw'), reports: generatedSecret('pw'), billing: generatedSecret('pw') };
  const servers: Record<keyof typeof passwords, SessionTokenServer> = {
    fleet: await startSessionTokenServer({
      username: 'fleet-user',
      password: passwords.fleet,
      lifetimeSeconds: 300,
      now,
    }),
    reports: await startSessionTokenServer({
      username: 'reports-user',
      password: passwords.reports,
      lifetimeSeconds: 120,
      now,
    }),
    billing: await startSessionTokenServer({
      username: 'billing-user',
      password: generatedSecret('other-pw'),
      lifetimeSeconds: 300,
      now,
    }),
  };
  const upstream: DemoUpstream = await startDemoUpstream({
    isValidToken: (token) => Object.values(servers).some((server) => server.isValidToken(token)),
  });
  const recorder = recordingSend(undefined, now);
  const account = (name: keyof typeof passwords, extra: Record<string, unknown> = {}) => ({
    upstream: `${upstream.url}/${name}`,
    route: { pathPrefix: `/${name}` },
    auth: {
      flow: 'session',
      loginUrl: servers[name].loginUrl,
      refreshUrl: servers[name].refreshUrl,
      username: `${name}-user`,
      password: `\${PW_${name.toUpperCase()}}`,
    },
    ...extra,
  });
  const config = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      accounts: {
        fleet: account('fleet'),
        reports: account('reports', { refresh: { minInterval: '1s' } }),
        billing: account('billing'),
      },
    },
    { env: { PW_FLEET: passwords.fleet, PW_REPORTS: passwords.reports, PW_BILLING: passwords.billing } },
  );
  const log = captureLogger('debug');
  const sidecar = new Sidecar(config, {
    clock,
    logger: log.logger,
    send: recorder.send,
    defaultMetrics: false,
    random: () => 0.5,
  });
  await sidecar.start();
  const advance = (ms: number) => clock.advance(ms, () => sidecar.settled());
  await advance(40 * MINUTE);
  servers.reports.setLifetime(1);
  await advance(20 * MINUTE);
  return {
    sidecar,
    clock,
    secrets: () => [...Object.values(passwords), ...issuedSecrets(recorder.responses)],
    logText: () => log.text(),
    async close() {
      await sidecar.stop();
      await Promise.all([...Object.values(servers).map((server) => server.close()), upstream.close()]);
    },
  };
}
