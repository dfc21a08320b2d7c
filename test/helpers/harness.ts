import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OAuth2Server } from 'oauth2-mock-server';
import { afterAll, afterEach } from 'vitest';
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
import { FaultTokenServer, startHostileTokenServer, type HostileTokenServer } from './fault-token-server.js';
import { startRecordingUpstream, type RecordingUpstream } from './recording-upstream.js';
import { runCli, spawnCli, type RunningCli } from './spawn-cli.js';

/**
 * Writes the config file an e2e test starts the CLI with, as JSON: data and admin ports 0, and
 * the one account `name`, the default, with `account`'s settings. The file is `<dir>/<file>`
 * (`sidecar.json` unless given); returns its path.
 */
export function writeAccountConfig(
  dir: string,
  name: string,
  account: Record<string, unknown>,
  file = 'sidecar.json',
): string {
  const path = join(dir, file);
  const config = { listen: { port: 0 }, admin: { port: 0 }, accounts: { [name]: { default: true, ...account } } };
  writeFileSync(path, JSON.stringify(config));
  return path;
}

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
}

export interface SessionHarnessOptions {
  server?: Partial<SessionTokenServerOptions>;
  account?: Record<string, unknown>;
  config?: Record<string, unknown>;
  deps?: SidecarDependencies;
  wrapSend?: (send: SendTokenRequest) => SendTokenRequest;
}

export interface LaunchedCli {
  cli: RunningCli;
  data: string;
  admin: string;
}

/** Every e2e set-up in one place: each piece is started on a free loopback port and stopped after the test. */
export interface Harness {
  /** Runs `cleanup` after the current test; cleanups run last first. */
  defer(cleanup: () => unknown): void;
  /** A fresh directory under the system temp dir, removed after the test. */
  tempDir(prefix: string): string;
  /** The demo session token server (`username` `u`, a generated password unless given). */
  sessionTokenServer(
    options?: Partial<SessionTokenServerOptions>,
  ): Promise<{ tokenServer: SessionTokenServer; password: string }>;
  /** The demo upstream, answering 200 only to a token `isValidToken` accepts. */
  demoUpstream(isValidToken: (token: string) => boolean): Promise<DemoUpstream>;
  /** A fault-injecting front for `target` (a token server's origin), in `pass` mode. */
  faultFront(target: string): Promise<FaultTokenServer>;
  /** A token endpoint answering each request with `answer(request, index)` (R1-R4). */
  hostileTokenServer(answer: HostileTokenServer['answer']): Promise<HostileTokenServer>;
  /** An upstream that records every request (over TLS with `tls`). */
  recordingUpstream(tls?: { key: string; cert: string }): Promise<RecordingUpstream>;
  /** oauth2-mock-server with an RS256 key. */
  oauth2Server(): Promise<OAuth2Server>;
  /**
   * A sidecar in this process for `config` (data and admin ports on 127.0.0.1:0 unless given;
   * `${VAR}` from `env`), with no default metrics, started and settled; `settle: false` leaves it
   * at its cold start, `start: false` leaves the starting to the test. Stopped after the test.
   */
  sidecar(
    config: Record<string, unknown>,
    options?: { env?: NodeJS.ProcessEnv; deps?: SidecarDependencies; settle?: boolean; start?: boolean },
  ): Promise<Sidecar>;
  /**
   * A real session-dialect token server and a real upstream that only accepts its live tokens,
   * with a real sidecar in front (account `fleet`, the default): real sockets everywhere, time
   * from one fake clock, every token response recorded.
   */
  session(options?: SessionHarnessOptions): Promise<SessionHarness>;
  /** The built CLI as a child process, killed after the test if still running. */
  spawnCli(args: string[], options?: Parameters<typeof spawnCli>[1]): RunningCli;
  /**
   * The built CLI started with `args` (JSON logs), once it has logged that it listens: its data
   * and admin URLs. Killed after the test if still running.
   */
  launchCli(args: string[], options?: Parameters<typeof spawnCli>[1]): Promise<LaunchedCli>;
  /** The built CLI run to completion (killed after the test if it hangs). */
  runCli(args: string[], options?: Parameters<typeof runCli>[1]): ReturnType<typeof runCli>;
}

/**
 * The e2e harness: call once at the top of a test file; everything started through it during a
 * test is stopped after that test (an `afterEach` it registers). With `'file'`, what is started
 * (in a `beforeAll`) is stopped after the file's last test instead.
 */
export function useHarness(scope: 'test' | 'file' = 'test'): Harness {
  const cleanups: Array<() => unknown> = [];
  (scope === 'test' ? afterEach : afterAll)(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });
  const defer = (cleanup: () => unknown) => void cleanups.push(cleanup);
  const spawnAndKill: Harness['spawnCli'] = (args, options) => {
    const cli = spawnCli(args, options);
    defer(async () => {
      if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
      await cli.exited;
    });
    return cli;
  };
  const harness: Harness = {
    defer,
    tempDir(prefix) {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      defer(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
    async sessionTokenServer(options = {}) {
      const password = options.password ?? generatedSecret('pw');
      const tokenServer = await startSessionTokenServer({ username: 'u', lifetimeSeconds: 600, ...options, password });
      defer(() => tokenServer.close());
      return { tokenServer, password };
    },
    async demoUpstream(isValidToken) {
      const upstream = await startDemoUpstream({ isValidToken });
      defer(() => upstream.close());
      return upstream;
    },
    async faultFront(target) {
      const front = await new FaultTokenServer(target).start();
      defer(() => front.close());
      return front;
    },
    async hostileTokenServer(answer) {
      const server = await startHostileTokenServer(answer);
      defer(() => server.close());
      return server;
    },
    async recordingUpstream(tls) {
      const upstream = await startRecordingUpstream(tls);
      defer(() => upstream.close());
      return upstream;
    },
    async oauth2Server() {
      const server = new OAuth2Server();
      await server.issuer.keys.generate('RS256');
      await server.start(0, '127.0.0.1');
      defer(() => server.stop());
      return server;
    },
    async sidecar(config, options = {}) {
      const parsed = parseConfig(
        { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, ...config },
        { env: options.env ?? {} },
      );
      const sidecar = new Sidecar(parsed, { defaultMetrics: false, ...options.deps });
      defer(() => sidecar.stop());
      if (options.start === false) return sidecar;
      await sidecar.start();
      if (options.settle !== false) await sidecar.settled();
      return sidecar;
    },
    session: (options) => startSession(harness, options),
    spawnCli: spawnAndKill,
    async launchCli(args, options) {
      const cli = spawnAndKill(args, options);
      const line = await cli.waitForLog((entry) => entry.msg === 'bearer-sidecar listening');
      return { cli, data: String(line.data), admin: String(line.admin) };
    },
    async runCli(args, options) {
      const cli = spawnAndKill(args, options);
      const code = await cli.exited;
      return { code, stdout: cli.stdout(), stderr: cli.stderr() };
    },
  };
  return harness;
}

async function startSession(harness: Harness, options: SessionHarnessOptions = {}): Promise<SessionHarness> {
  const clock = new FakeClock();
  const { tokenServer, password } = await harness.sessionTokenServer({
    username: 'fleet-user',
    lifetimeSeconds: 60,
    now: () => clock.now(),
    ...options.server,
  });
  const upstream = await harness.demoUpstream((token) => tokenServer.isValidToken(token));
  const recorder = recordingSend(options.wrapSend?.(sendTokenRequest) ?? sendTokenRequest, () => clock.now());
  const log = captureLogger('debug');
  const sidecar = await harness.sidecar(
    {
      ...options.config,
      accounts: {
        fleet: {
          upstream: `${upstream.url}/api`,
          default: true,
          auth: sessionAuth(tokenServer, { username: 'fleet-user' }),
          ...options.account,
        },
      },
    },
    {
      env: { PW: password },
      deps: { clock, logger: log.logger, send: recorder.send, random: () => 0.5, ...options.deps },
      settle: false,
    },
  );
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
  };
}

/** A session-dialect `auth` block for `tokenServer`, its password read from `${PW}`. */
export function sessionAuth(
  tokenServer: Pick<SessionTokenServer, 'loginUrl' | 'refreshUrl'>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    flow: 'session',
    loginUrl: tokenServer.loginUrl,
    refreshUrl: tokenServer.refreshUrl,
    username: 'u',
    password: '${PW}',
    ...extra,
  };
}
