import { randomBytes } from 'node:crypto';
import { parseConfig } from '../config/load.js';
import { Sidecar } from '../app.js';
import type { Logger } from '../util/logger.js';
import { startSessionTokenServer, type SessionTokenServer } from './session-token-server.js';
import { startDemoUpstream, type DemoUpstream } from './upstream.js';

/** Tokens live 30 s so a refresh (at 80%, ~24 s) happens within the first minute. */
const DEMO_TOKEN_LIFETIME_SECONDS = 30;

export interface DemoHandle {
  sidecar: Sidecar;
  tokenServer: SessionTokenServer;
  upstream: DemoUpstream;
  stop(): Promise<void>;
}

/**
 * `bearer-sidecar demo`: a session-dialect token server with short, rotating tokens, an API
 * that refuses missing or expired tokens, and a sidecar in front. All on loopback.
 */
export async function startDemo(options: {
  flags: Record<string, string | undefined>;
  logger: Logger;
}): Promise<DemoHandle> {
  // Generated per run: the demo ships no credentials.
  const password = randomBytes(18).toString('base64url');
  const tokenServer = await startSessionTokenServer({
    username: 'demo',
    password,
    accountId: 42,
    lifetimeSeconds: DEMO_TOKEN_LIFETIME_SECONDS,
    outageSwitch: true,
  });
  const upstream = await startDemoUpstream({
    isValidToken: (token) => tokenServer.isValidToken(token),
    name: 'demo-fleet-api',
  });
  const config = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 8080 },
      admin: { host: '127.0.0.1', port: 9464 },
      accounts: {
        fleet: {
          upstream: upstream.url,
          default: true,
          auth: {
            flow: 'session',
            loginUrl: tokenServer.loginUrl,
            refreshUrl: tokenServer.refreshUrl,
            username: 'demo',
            password: '${BEARER_SIDECAR_DEMO_PASSWORD}',
            accountId: 42,
          },
        },
      },
    },
    { env: { BEARER_SIDECAR_DEMO_PASSWORD: password }, flags: options.flags },
  );
  const sidecar = new Sidecar(config, { logger: options.logger });
  try {
    await sidecar.start();
  } catch (error) {
    await Promise.all([tokenServer.close(), upstream.close()]);
    throw error;
  }
  return {
    sidecar,
    tokenServer,
    upstream,
    async stop() {
      await sidecar.stop();
      await Promise.all([tokenServer.close(), upstream.close()]);
    },
  };
}

export function demoInstructions(demo: DemoHandle): string {
  const data = demo.sidecar.dataUrl();
  const admin = demo.sidecar.adminUrl();
  const table = (rows: Array<[string, string]>) => {
    const width = Math.max(...rows.map(([left]) => left.length));
    return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`);
  };
  return [
    '',
    'bearer-sidecar demo is running.',
    ...table([
      [`sidecar (no credentials needed)`, data],
      [`admin (/metrics /healthz /readyz /status)`, admin],
      [`token server (${DEMO_TOKEN_LIFETIME_SECONDS} s tokens, single-use refresh tokens)`, demo.tokenServer.url],
      [`demo API (refuses missing or expired tokens)`, demo.upstream.url],
    ]),
    '',
    'Try:',
    ...table([
      [`curl -s ${data}/vehicles`, '# the sidecar adds the token'],
      [`curl -s ${demo.upstream.url}/vehicles`, '# straight to the API, no token: 401'],
      [`curl -s ${admin}/status`, '# token state, fingerprint, next refresh'],
      [`curl -s ${admin}/metrics | grep bearer_sidecar_token_requests_total`, ''],
      [
        `curl -s -X POST ${admin}/accounts/fleet/refresh`,
        '# ask for a token now; "deferred" is no failure: the loop guard holds it until "at" (see "reason")',
      ],
      [
        `curl -s -X POST '${demo.tokenServer.outageUrl}?on=1'`,
        '# break the token server: requests go on with the valid token, /status turns degraded, then expired',
      ],
      [`curl -s -X POST '${demo.tokenServer.outageUrl}?on=0'`, '# mend it: the next retry gets a token'],
    ]),
    '',
    `A refresh happens about every ${Math.round(DEMO_TOKEN_LIFETIME_SECONDS * 0.8)} s; watch the counters move. Ctrl-C stops.`,
    '',
  ].join('\n');
}
