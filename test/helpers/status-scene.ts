import type { Sidecar } from '../../src/app.js';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import type { DemoUpstream } from '../../src/demo/upstream.js';
import { captureLogger } from './capture-logger.js';
import { FakeClock } from './fake-clock.js';
import { generatedSecret, issuedSecrets, recordingSend, sessionAuth, type Harness } from './harness.js';

const MINUTE = 60_000;

export interface StatusScene {
  sidecar: Sidecar;
  clock: FakeClock;
  /** Every secret of the run: passwords, and every token and refresh token issued. */
  secrets(): string[];
  /** Everything the sidecar logged (debug level). */
  logText(): string;
}

/**
 * An hour in the life of three accounts, on a fake clock over real sockets:
 * `fleet` is healthy (5 min tokens); `reports` falls into a refresh loop 40 minutes in (its
 * server starts issuing 1 s tokens); `billing` has a wrong password (login rejected). Everything
 * is started through `harness` (which stops it).
 */
export async function startStatusScene(harness: Harness): Promise<StatusScene> {
  const clock = new FakeClock();
  const now = () => clock.now();
  const server = (username: string, lifetimeSeconds: number) =>
    harness.sessionTokenServer({ username, lifetimeSeconds, now });
  const started = { fleet: await server('fleet-user', 300), reports: await server('reports-user', 120) };
  // billing's server knows another password than the one the sidecar is given.
  const billing = await server('billing-user', 300);
  const passwords = {
    fleet: started.fleet.password,
    reports: started.reports.password,
    billing: generatedSecret('pw'),
  };
  const servers: Record<keyof typeof passwords, SessionTokenServer> = {
    fleet: started.fleet.tokenServer,
    reports: started.reports.tokenServer,
    billing: billing.tokenServer,
  };
  const upstream: DemoUpstream = await harness.demoUpstream((token) =>
    Object.values(servers).some((one) => one.isValidToken(token)),
  );
  const recorder = recordingSend(undefined, now);
  const account = (name: keyof typeof passwords, extra: Record<string, unknown> = {}) => ({
    upstream: `${upstream.url}/${name}`,
    route: { pathPrefix: `/${name}` },
    auth: sessionAuth(servers[name], { username: `${name}-user`, password: `\${PW_${name.toUpperCase()}}` }),
    ...extra,
  });
  const log = captureLogger('debug');
  const sidecar = await harness.sidecar(
    {
      accounts: {
        fleet: account('fleet'),
        reports: account('reports', { refresh: { minInterval: '1s' } }),
        billing: account('billing'),
      },
    },
    {
      env: { PW_FLEET: passwords.fleet, PW_REPORTS: passwords.reports, PW_BILLING: passwords.billing },
      deps: { clock, logger: log.logger, send: recorder.send, random: () => 0.5 },
      settle: false,
    },
  );
  const advance = (ms: number) => clock.advance(ms, () => sidecar.settled());
  await advance(40 * MINUTE);
  servers.reports.setLifetime(1);
  await advance(20 * MINUTE);
  return {
    sidecar,
    clock,
    secrets: () => [...Object.values(passwords), billing.password, ...issuedSecrets(recorder.responses)],
    logText: () => log.text(),
  };
}
