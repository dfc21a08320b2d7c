import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { secretFilesOf } from '../../src/config/resolve.js';
import type { ActiveToken } from '../../src/tokens/active-token.js';
import type { TokenManager } from '../../src/tokens/token-manager.js';
import { TokenUnavailableError } from '../../src/tokens/types.js';
import { FakeClock, flushIo } from '../helpers/fake-clock.js';
import { SESSION_AUTH, testAccount, testTokenManager } from '../helpers/token-manager-setup.js';
import { seededRandom, SharedStoreHub, SoakTokenServer } from './world.js';

/*
 * The soak run: days of one account's life on the fake clock, two replicas sharing a store,
 * faults drawn from a seeded random source, invariants checked on every client request.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Every fault the world can inject. */
export const FAULT_KINDS = [
  'token-server-error', // the token endpoint answers 503
  'token-refused', // the token endpoint refuses connections
  'refresh-rejected', // every refresh is rejected (a login follows)
  'revoked', // every issued access token is revoked at once
  'upstream-forbidden', // the API answers 403 to everything (the token is not the problem)
  'store-outage', // the shared store is unreachable
  'store-restart', // the shared store loses its data
  'wall-clock-jump', // a suspend (the wall clock jumps ahead up to 3 h) or an NTP step back (up to 1 h)
  'credential-change', // the password changes on the server (sessions end); the password file is rewritten when it ends
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SoakOptions {
  days: number;
  seed: number;
  /** The faults to draw from (default: all). */
  faults?: readonly FaultKind[];
  /** Token lifetime the server states, in seconds (default 600). */
  lifetimeS?: number;
  /** Mean simulated time between faults (default 2 h). */
  meanTimeBetweenFaultsMs?: number;
}

export interface SoakReport {
  days: number;
  seed: number;
  faults: Record<string, number>;
  tokenRequests: number;
  clientRequests: number;
  /** Client requests answered 503 token_unavailable (waited out `waitForToken`). */
  unavailable: number;
  /** Time outside fault windows (and their recovery margin), in hours. */
  cleanHours: number;
  /** Token requests in clean time, against the schedule's ideal (`at` x lifetime apart). */
  cleanTokenRequests: number;
  idealCleanTokenRequests: number;
  /** Seconds from each password file rewrite to the next successful login (P2: within a look, 5 s). */
  credentialRecoverySeconds: number[];
  violations: string[];
}

/** Client requests per replica per step, and the step. */
const STEP_MS = 20 * SECOND;
/** After a fault ends, time for the schedule to settle before it counts as clean again. */
const recoveryMs = (lifetimeS: number) => 2 * lifetimeS * SECOND + 5 * MINUTE;

interface FaultWindow {
  kind: FaultKind;
  start: number;
  end: number;
}

/** Runs the soak and returns its report; the caller asserts `violations` is empty. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const lifetimeS = options.lifetimeS ?? 600;
  const kinds = options.faults ?? FAULT_KINDS;
  const random = seededRandom(options.seed);
  const clock = new FakeClock();
  // Fault windows and request counts are on the monotonic clock: the wall clock jumps.
  const start = clock.monotonic();
  const server = new SoakTokenServer(
    () => clock.now(),
    lifetimeS,
    () => clock.monotonic(),
  );
  const hub = new SharedStoreHub(() => clock.now());
  // The password lives in a file both replicas watch (P2); a credential change rewrites it.
  const secrets = mkdtempSync(join(tmpdir(), 'bs-soak-'));
  const passwordFile = join(secrets, 'password');
  server.password = 'pw-0';
  writeFileSync(passwordFile, `${server.password}\n`);
  const { password: _inline, ...sessionAuth } = SESSION_AUTH;
  const account = testAccount({ ...sessionAuth, passwordFile });
  const violations: string[] = [];
  const violation = (text: string) => {
    if (violations.length < 50) violations.push(`${new Date(clock.now()).toISOString()} ${text}`);
  };
  const onUnhandled = (error: unknown) => violation(`unhandled error: ${String(error)}`);
  process.on('unhandledRejection', onUnhandled);

  const managers = [0, 1].map((index) =>
    testTokenManager({
      clock,
      account,
      store: hub.view(index),
      send: (request) => server.send(request),
      random,
      secretFiles: secretFilesOf(account.auth),
    }),
  );
  const report: SoakReport = {
    days: options.days,
    seed: options.seed,
    faults: {},
    tokenRequests: 0,
    clientRequests: 0,
    unavailable: 0,
    cleanHours: 0,
    cleanTokenRequests: 0,
    idealCleanTokenRequests: 0,
    credentialRecoverySeconds: [],
    violations,
  };

  /** One client request through a replica, as the data plane makes it (T7, T8). */
  const upstreamStatus = (token: ActiveToken): number => {
    const verdict = server.judge(token.secret.reveal());
    if (verdict === 'expired') violation(`an expired token was sent upstream (${token.fingerprint})`);
    if (verdict === 'unknown') violation(`a token the server never issued was sent upstream`);
    if (active?.kind === 'upstream-forbidden') return 403;
    return verdict === 'valid' ? 200 : 401;
  };
  const clientRequest = async (manager: TokenManager): Promise<void> => {
    report.clientRequests += 1;
    try {
      let token = manager.current() ?? (await manager.waitForToken());
      if (account.refresh.retryOn.includes(upstreamStatus(token))) {
        token = await manager.replacementFor(token);
        upstreamStatus(token);
      }
    } catch (error) {
      if (error instanceof TokenUnavailableError) report.unavailable += 1;
      else violation(`a client request failed: ${String(error)}`);
    }
  };
  const pending = new Set<Promise<void>>();
  const settle = async () => {
    await flushIo();
    await Promise.all(managers.map((manager) => manager.settled()));
  };

  let active: FaultWindow | undefined;
  const rewrites: number[] = [];
  const windows: FaultWindow[] = [];
  const meanGapMs = options.meanTimeBetweenFaultsMs ?? 2 * HOUR;
  const end = start + options.days * DAY;
  await Promise.all(managers.map((manager) => manager.start()));
  while (clock.monotonic() < end) {
    const now = clock.monotonic();
    if (active !== undefined && now >= active.end) {
      endFault(active.kind, { server, hub, passwordFile });
      if (active.kind === 'credential-change') rewrites.push(now);
      active = undefined;
    } else if (active === undefined && kinds.length > 0 && random() < STEP_MS / meanGapMs) {
      const kind = kinds[Math.floor(random() * kinds.length)]!;
      active = { kind, start: now, end: now + MINUTE + Math.floor(random() * 29 * MINUTE) };
      windows.push(active);
      report.faults[kind] = (report.faults[kind] ?? 0) + 1;
      startFault(kind, { server, hub, clock, random, passwordFile });
    }
    for (const manager of managers) {
      const request = clientRequest(manager).finally(() => pending.delete(request));
      pending.add(request);
    }
    await clock.advance(STEP_MS, settle);
  }
  if (active !== undefined) endFault(active.kind, { server, hub, passwordFile });
  await clock.advance(5 * MINUTE, settle);
  await Promise.all(managers.map((manager) => manager.stop()));
  await Promise.all(pending);
  process.off('unhandledRejection', onUnhandled);
  rmSync(secrets, { recursive: true, force: true });

  for (const reuse of server.reusedRefreshTokens) {
    const during = windows.find((window) => reuse.at >= window.start && reuse.at < window.end + recoveryMs(lifetimeS));
    violations.push(
      `${new Date(reuse.at).toISOString()} the group sent a spent refresh token again` +
        (during === undefined ? '' : ` (during or after ${during.kind} from ${new Date(during.start).toISOString()})`),
    );
  }
  report.tokenRequests = server.requestTimes.length;
  for (const rewrite of rewrites) {
    const login = server.loginTimes.find((at) => at >= rewrite);
    if (login !== undefined) report.credentialRecoverySeconds.push((login - rewrite) / SECOND);
  }
  const clean = cleanIntervals(start, end, windows, recoveryMs(lifetimeS));
  const cleanMs = clean.reduce((sum, [from, to]) => sum + (to - from), 0);
  report.cleanHours = Math.round((cleanMs / HOUR) * 10) / 10;
  report.cleanTokenRequests = server.requestTimes.filter((at) =>
    clean.some(([from, to]) => at >= from && at < to),
  ).length;
  report.idealCleanTokenRequests = Math.round(cleanMs / (account.refresh.at * lifetimeS * SECOND));
  if (report.cleanTokenRequests > 1.2 * report.idealCleanTokenRequests + 2) {
    violation(
      `token requests outside fault windows: ${report.cleanTokenRequests}, ideal ${report.idealCleanTokenRequests} (over 1.2x)`,
    );
  }
  return report;
}

interface SoakWorld {
  server: SoakTokenServer;
  hub: SharedStoreHub;
  /** The password file the replicas read (and watch). */
  passwordFile: string;
}

function startFault(kind: FaultKind, world: SoakWorld & { clock: FakeClock; random: () => number }): void {
  const { server, hub, clock, random } = world;
  if (kind === 'wall-clock-jump') {
    if (random() < 0.5) clock.suspend(MINUTE + Math.floor(random() * 3 * HOUR));
    else clock.stepWall(-(MINUTE + Math.floor(random() * HOUR)));
  }
  if (kind === 'token-server-error') server.mode = 'server-error';
  if (kind === 'token-refused') server.mode = 'refused';
  if (kind === 'refresh-rejected') server.mode = 'reject-refresh';
  if (kind === 'revoked') server.revokeAll();
  if (kind === 'store-outage') hub.down = true;
  if (kind === 'store-restart') hub.restart();
  if (kind === 'credential-change') server.changePassword(`pw-${Math.floor(random() * 1e9)}`);
}

function endFault(kind: FaultKind, world: SoakWorld): void {
  world.server.mode = 'ok';
  if (kind === 'store-outage') world.hub.down = false;
  // The operator puts the new password in the Secret: the replicas notice the file within 5 s.
  if (kind === 'credential-change') writeFileSync(world.passwordFile, `${world.server.password ?? ''}\n`);
}

/** The stretches of [start, end) that no fault window (plus its recovery margin) touches. */
function cleanIntervals(start: number, end: number, windows: FaultWindow[], recovery: number): Array<[number, number]> {
  const clean: Array<[number, number]> = [];
  let from = start + recovery; // start-up counts as a fault: the first login and its schedule
  for (const window of windows) {
    if (window.start > from) clean.push([from, window.start]);
    from = Math.max(from, window.end + recovery);
  }
  if (end > from) clean.push([from, end]);
  return clean;
}
