import { randomBytes } from 'node:crypto';
import { Sidecar, type SidecarDependencies } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { sendTokenRequest } from '../../src/flows/http-client.js';
import type { TokenHttpResponse } from '../../src/flows/types.js';
import type { SendTokenRequest } from '../../src/tokens/types.js';
import {
  startSessionTokenServer,
  type SessionTokenServer,
  type SessionTokenServerOptions,
} from '../../src/demo/session-token-server.js';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.js';
import { captureLogger } from './capture-logger.js';
import { FakeClock } from './fake-clock.js';

/** A secret made at run time: no credential is ever committed. */
export function generatedSecret(label: string): string {
  return `${label}-${randomBytes(12).toString('hex')}`;
}

/** Records every token response body, so tests can look for leaked tokens anywhere. */
export function recordingSend(
  inner: SendTokenRequest = sendTokenRequest,
  now: () => number = Date.now,
): { send: SendTokenRequest; responses: TokenHttpResponse[]; sentAt: number[] } {
  const responses: TokenHttpResponse[] = [];
  const sentAt: number[] = [];
  return {
    responses,
    sentAt,
    send: async (request, options) => {
      sentAt.push(now());
      const response = await inner(request, options);
      responses.push(response);
      return response;
    },
  };
}

export interface SessionHarness {
  clock: FakeClock;
  tokenServer: SessionTokenServer;
  upstream: DemoUpstream;
  sidecar: Sidecar;
  password: string;
  log: ReturnType<typeof captureLogger>;
  responses: TokenHttpResponse[];
  /** Fake-clock time of every token request sent. */
  sentAt: number[];
  /** Advances the fake clock, letting every token request it triggers finish. */
  advance(ms: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A real session-dialect token server and a real upstream that only accepts its live tokens,
 * with a real sidecar in front: real sockets everywhere, time from one fake clock.
 */
export async function startSessionHarness(
  options: {
    server?: Partial<SessionTokenServerOptions>;
    account?: Record<string, unknown>;
    config?: Record<string, unknown>;
    deps?: SidecarDependencies;
    wrapSend?: (send: SendTokenRequest) => SendTokenRequest;
  } = {},
): Promise<SessionHarness> {
  const clock = new FakeClock();
  const password = generatedSecret('pw');
  const tokenServer = await startSessionTokenServer({
    username: 'fleet-user',
    password,
    lifetimeSeconds: 60,
    now: () => clock.now(),
    ...options.server,
  });
  const upstream = await startDemoUpstream({ isValidToken: (token) => tokenServer.isValidToken(token) });
  const recorder = recordingSend(options.wrapSend?.(sendTokenRequest) ?? sendTokenRequest, () => clock.now());
  const log = captureLogger('debug');
  const config = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      ...options.config,
      accounts: {
        fleet: {
          upstream: `${upstream.url}/api`,
          default: true,
          auth: {
            flow: 'session',
            loginUrl: tokenServer.loginUrl,
            refreshUrl: tokenServer.refreshUrl,
            username: 'fleet-user',
            password: '${TEST_PASSWORD}',
          },
          ...options.account,
        },
      },
    },
    { env: { TEST_PASSWORD: password } },
  );
  const sidecar = new Sidecar(config, {
    clock,
    logger: log.logger,
    send: recorder.send,
    defaultMetrics: false,
    random: () => 0.5,
    ...options.deps,
  });
  await sidecar.start();
  return {
    clock,
    tokenServer,
    upstream,
    sidecar,
    password,
    log,
    responses: recorder.responses,
    sentAt: recorder.sentAt,
    advance: (ms) => clock.advance(ms, () => sidecar.settled()),
    async close() {
      await sidecar.stop();
      await Promise.all([tokenServer.close(), upstream.close()]);
    },
  };
}

/** Sum of a counter's samples in Prometheus text, optionally filtered by a label substring. */
export function metricSum(text: string, name: string, labelFilter = ''): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .filter((line) => line.includes(labelFilter))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Every token and refresh token a token server handed out, from recorded responses. */
export function issuedSecrets(responses: readonly TokenHttpResponse[]): string[] {
  const secrets: string[] = [];
  for (const response of responses) {
    try {
      const body = JSON.parse(response.body) as Record<string, unknown>;
      for (const key of ['token', 'refreshToken', 'access_token', 'refresh_token', 'id_token']) {
        if (typeof body[key] === 'string') secrets.push(body[key]);
      }
    } catch {
      // Not JSON: nothing issued.
    }
  }
  return secrets;
}
