import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { request, Agent, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import type { FaultTokenServer } from '../helpers/fault-token-server.js';
import { metricSum, useHarness } from '../helpers/harness.js';
import { startHeldUpstream } from '../helpers/held-upstream.js';
import { connectionRefused } from '../helpers/raw-client.js';
import { freePort, waitFor } from '../helpers/ports.js';
import type { RunningCli } from '../helpers/spawn-cli.js';

const harness = useHarness();
const APPLIED = 'configuration reload applied';
const REJECTED = 'configuration reload rejected; the running configuration stays';
const RELOADS = 'bearer_sidecar_config_reloads_total';

interface World {
  dir: string;
  loginUrl: string;
  refreshUrl: string;
  passwordFile: string;
  password: string;
  logins: () => number;
}

async function world(): Promise<World> {
  const dir = harness.tempDir('bs-reload-');
  const { tokenServer, password } = await harness.sessionTokenServer();
  const passwordFile = join(dir, 'pw');
  writeFileSync(passwordFile, password);
  return {
    dir,
    loginUrl: tokenServer.loginUrl,
    refreshUrl: tokenServer.refreshUrl,
    passwordFile,
    password,
    logins: () => tokenServer.stats.logins,
  };
}

/** One account in YAML: routed by path prefix, session auth (the password file may be another copy). */
function account(w: World, name: string, upstream: string, passwordFile = w.passwordFile): string {
  return (
    `  ${name}:\n    upstream: ${upstream}\n    route: { pathPrefix: /${name} }\n` +
    `    auth: { flow: session, loginUrl: ${w.loginUrl}, refreshUrl: ${w.refreshUrl}, username: u, passwordFile: ${passwordFile} }\n`
  );
}

function configText(accounts: string[], head = 'listen: { port: 0 }\nadmin: { port: 0 }\n'): string {
  return `${head}shutdownTimeout: 30s\naccounts:\n${accounts.join('')}`;
}

/** One account `a` on a recording upstream, started from a config file (with `flags`), logged in. */
async function oneAccountSidecar(flags: string[] = []) {
  const w = await world();
  const upstream = await harness.recordingUpstream();
  const file = join(w.dir, 'c.yaml');
  writeFileSync(file, configText([account(w, 'a', upstream.url)]));
  const running = await harness.launchCli(['--config', file, ...flags]);
  await loggedIn(running.cli, 'a');
  return { w, upstream, file, ...running };
}

async function loggedIn(cli: RunningCli, name: string): Promise<Record<string, unknown>> {
  return cli.waitForLog((entry) => entry.msg === 'token request: login succeeded' && entry.account === name);
}

/** A login of `name` after the one logged as `before` (the log is searched from its start). */
async function loggedInAgain(cli: RunningCli, name: string, before: Record<string, unknown>): Promise<void> {
  await cli.waitForLog(
    (entry) =>
      entry.msg === 'token request: login succeeded' &&
      entry.account === name &&
      entry.fingerprint !== before.fingerprint,
  );
}

/**
 * H2: a sidecar on `config` whose account `a` logged in and whose next token request (asked for
 * through the admin port) stalls at `front`: a reload replacing a's token manager waits for it.
 */
async function sidecarWithStalledRefresh(
  file: string,
  config: string,
  front: FaultTokenServer,
): Promise<{ cli: RunningCli; admin: string }> {
  writeFileSync(file, config);
  const { cli, admin } = await harness.launchCli(['--config', file]);
  await loggedIn(cli, 'a');
  front.mode = 'stall';
  // Started at once, or held by the loop guard (minInterval) for at most a second after the login.
  const asked = await fetch(`${admin}/accounts/a/refresh`, { method: 'POST' });
  expect(['started', 'deferred']).toContain(((await asked.json()) as { result: string }).result);
  await waitFor('the stalled refresh', async () => front.received === 2);
  return { cli, admin };
}

function appliedWith(cli: RunningCli, match: (entry: Record<string, unknown>) => boolean) {
  return cli.waitForLog((entry) => entry.msg === APPLIED && match(entry));
}

async function reloads(admin: string, outcome: string): Promise<number> {
  return metricSum(await (await fetch(`${admin}/metrics`)).text(), RELOADS, `outcome="${outcome}"`);
}

/** A GET through `agent`: the status, and whether it went on a connection opened before. */
function getWith(agent: Agent, url: string): Promise<{ status: number; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Answered {
  status: number;
  body: string;
  connection: string | undefined;
  /** Resolves once its connection has closed. */
  closed: Promise<void>;
  /** Whether its connection is still open. */
  open: () => boolean;
}

/** A GET through `agent`: its answer, and what becomes of its connection. */
function getOn(agent: Agent, url: string): Promise<Answered> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res: IncomingMessage) => {
      let open = true;
      const closed = new Promise<void>((done) => req.socket?.once('close', () => done()));
      void closed.then(() => (open = false));
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const { statusCode = 0, headers } = res;
        resolve({ status: statusCode, body, connection: headers.connection, closed, open: () => open });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('H2 live reload', () => {
  it('H2: SIGHUP applies a changed config: an added account serves, a removed one is gone, a changed upstream keeps its token (no login), a changed auth logs in anew', async () => {
    const w = await world();
    const first = await harness.recordingUpstream();
    const second = await harness.recordingUpstream();
    // The same password in another file: the account's auth changes, and its login still succeeds.
    const copy = join(w.dir, 'pw-copy');
    writeFileSync(copy, w.password);
    const file = join(w.dir, 'c.yaml');
    const names = ['keep', 'gone', 'moved', 'reauth'];
    writeFileSync(file, configText(names.map((name) => account(w, name, first.url))));
    const { cli, data, admin } = await harness.launchCli(['--config', file]);
    for (const name of names) await loggedIn(cli, name);
    const reauthBefore = await loggedIn(cli, 'reauth');
    expect(w.logins()).toBe(4);
    expect((await fetch(`${data}/moved/x`)).status).toBe(200);
    const tokenBefore = first.requests.at(-1)?.headers.authorization;

    writeFileSync(
      file,
      configText([
        account(w, 'keep', first.url),
        account(w, 'moved', second.url),
        account(w, 'reauth', first.url, copy),
        account(w, 'fresh', first.url),
      ]),
    );
    cli.child.kill('SIGHUP');
    const applied = await appliedWith(cli, () => true);
    expect(applied).toMatchObject({
      trigger: 'SIGHUP',
      added: ['fresh'],
      removed: ['gone'],
      changed: { moved: ['upstream'], reauth: ['auth'] },
    });
    await loggedIn(cli, 'fresh');
    await loggedInAgain(cli, 'reauth', reauthBefore);
    expect((await fetch(`${data}/fresh/x`)).status).toBe(200);
    expect((await fetch(`${data}/gone/x`)).status).toBe(404);
    expect((await fetch(`${data}/moved/y`)).status).toBe(200);
    expect(second.requests.at(-1)?.headers.authorization).toBe(tokenBefore);
    expect((await fetch(`${data}/keep/x`)).status).toBe(200);
    // fresh and reauth logged in; keep and moved did not.
    expect(w.logins()).toBe(6);
    expect(await reloads(admin, 'applied')).toBe(1);
    expect(JSON.stringify(applied)).not.toContain(w.password);
  });

  it('H2: an invalid config is rejected, every problem logged and counted as rejected; the old one keeps serving', async () => {
    const { w, file, cli, data, admin } = await oneAccountSidecar();
    writeFileSync(
      file,
      configText([account(w, 'a', 'not a url')], 'listen: { port: 0 }\nadmin: { port: 0 }\nlimitz: 1\n'),
    );
    cli.child.kill('SIGHUP');
    const rejected = await cli.waitForLog((entry) => entry.msg === REJECTED);
    const problems = rejected.problems as string[];
    expect(problems.some((problem) => problem.includes('unknown key "limitz"'))).toBe(true);
    expect(problems.some((problem) => problem.startsWith('accounts.a.upstream'))).toBe(true);
    expect(await reloads(admin, 'rejected')).toBe(1);
    expect(await reloads(admin, 'applied')).toBe(0);
    expect((await fetch(`${data}/a/x`)).status).toBe(200);
  });

  it('H2: a changed store is refused with that reason; the running store stays', async () => {
    const { w, upstream, file, cli, data, admin } = await oneAccountSidecar();
    writeFileSync(
      file,
      configText(
        [account(w, 'a', upstream.url)],
        `listen: { port: 0 }\nadmin: { port: 0 }\nstore: { type: file, path: ${join(w.dir, 'state')} }\n`,
      ),
    );
    cli.child.kill('SIGHUP');
    const rejected = await cli.waitForLog((entry) => entry.msg === REJECTED);
    expect(rejected.problems).toEqual(['store changed: a different token store needs a restart']);
    expect(await reloads(admin, 'rejected')).toBe(1);
    expect((await fetch(`${data}/a/x`)).status).toBe(200);
  });

  it('H2: --watch-config reloads a file rewritten in place, then one renamed over it', async () => {
    const { w, upstream, file, cli, data, admin } = await oneAccountSidecar(['--watch-config']);
    writeFileSync(file, configText([account(w, 'a', upstream.url), account(w, 'b', upstream.url)]));
    expect(await appliedWith(cli, (entry) => String(entry.added) === 'b')).toMatchObject({ trigger: 'file change' });
    const next = join(w.dir, 'c.yaml.new');
    writeFileSync(
      next,
      configText([account(w, 'a', upstream.url), account(w, 'b', upstream.url), account(w, 'c', upstream.url)]),
    );
    renameSync(next, file);
    await appliedWith(cli, (entry) => String(entry.added) === 'c');
    await loggedIn(cli, 'c');
    expect((await fetch(`${data}/c/x`)).status).toBe(200);
    expect(await reloads(admin, 'applied')).toBe(2);
  });

  it('H2: --watch-config follows a Kubernetes ConfigMap symlink swap (..data renamed to a new timestamped dir)', async () => {
    const w = await world();
    const upstream = await harness.recordingUpstream();
    const volume = join(w.dir, 'volume');
    const version = (name: string, text: string) => {
      mkdirSync(join(volume, name), { recursive: true });
      writeFileSync(join(volume, name, 'config.yaml'), text);
    };
    version('..2026_01_01_00_00_00.1', configText([account(w, 'a', upstream.url)]));
    symlinkSync('..2026_01_01_00_00_00.1', join(volume, '..data'));
    symlinkSync('..data/config.yaml', join(volume, 'config.yaml'));
    const { cli, data } = await harness.launchCli(['--config', join(volume, 'config.yaml'), '--watch-config']);
    await loggedIn(cli, 'a');
    version('..2026_01_01_00_01_00.2', configText([account(w, 'a', upstream.url), account(w, 'k', upstream.url)]));
    symlinkSync('..2026_01_01_00_01_00.2', join(volume, '..data_tmp'));
    renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
    await appliedWith(cli, (entry) => String(entry.added) === 'k');
    await loggedIn(cli, 'k');
    expect((await fetch(`${data}/k/x`)).status).toBe(200);
  });

  it('H2: a changed listen address is rebound (old port closed, new one serves); an unchanged one keeps its sockets', async () => {
    const { w, upstream, file, cli, data } = await oneAccountSidecar();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    harness.defer(() => agent.destroy());
    expect(await getWith(agent, `${data}/a/1`)).toEqual({ status: 200, reused: false });

    writeFileSync(file, configText([account(w, 'a', upstream.url), account(w, 'b', upstream.url)]));
    cli.child.kill('SIGHUP');
    expect(await appliedWith(cli, (entry) => String(entry.added) === 'b')).toMatchObject({ rebound: [], data });
    // Same listener, same socket: the keep-alive connection opened before the reload still serves.
    expect(await getWith(agent, `${data}/a/2`)).toEqual({ status: 200, reused: true });

    writeFileSync(
      file,
      configText([account(w, 'a', upstream.url)], 'listen: { host: 127.0.0.2, port: 0 }\nadmin: { port: 0 }\n'),
    );
    cli.child.kill('SIGHUP');
    const moved = await appliedWith(cli, (entry) => String(entry.removed) === 'b');
    expect(moved).toMatchObject({ rebound: ['data plane'], settings: ['listen'] });
    const newData = String(moved.data);
    expect(newData).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
    expect((await fetch(`${newData}/a/3`)).status).toBe(200);
    expect(await connectionRefused(data)).toBe(true);
  });

  it('H2: a request in flight when the config changes finishes on the config it started with', async () => {
    const w = await world();
    const held = await startHeldUpstream();
    harness.defer(() => held.close());
    const next = await harness.recordingUpstream();
    const file = join(w.dir, 'c.yaml');
    writeFileSync(file, configText([account(w, 'a', held.url)]));
    const { cli, data } = await harness.launchCli(['--config', file]);
    await loggedIn(cli, 'a');
    const inFlight = fetch(`${data}/a/slow`).then(async (res) => ({ status: res.status, body: await res.text() }));
    await held.arrived(1);

    writeFileSync(file, configText([account(w, 'a', next.url)]));
    cli.child.kill('SIGHUP');
    await appliedWith(cli, () => true);
    expect((await fetch(`${data}/a/after`)).status).toBe(200);
    expect(next.requests.map((r) => r.url)).toEqual(['/after']);
    held.received[0]?.answer(200);
    expect(await inFlight).toEqual({ status: 200, body: JSON.stringify({ seen: '/slow', bodyLength: 0 }) });
  });

  it('H2: a port added by a reload serves its own account from the first request, before the reload ends, under the new inbound rules', async () => {
    const w = await world();
    const front = await harness.faultFront(new URL(w.loginUrl).origin);
    const [shared, own] = [await harness.recordingUpstream(), await harness.recordingUpstream()];
    const viaFront: World = { ...w, loginUrl: front.url('/auth/login'), refreshUrl: front.url('/auth/refresh') };
    const slow = (refresh: string) =>
      `${account(viaFront, 'a', shared.url)}    default: true\n    refresh: ${refresh}\n`;
    const file = join(w.dir, 'c.yaml');
    const { cli } = await sidecarWithStalledRefresh(file, configText([slow('{ minInterval: 1s }')]), front);
    const port = await freePort();
    const b = account(w, 'b', own.url).replace('route: { pathPrefix: /b }', `route: { port: ${port} }`);
    // The same reload asks for an API key: the new port asks for it at once, not after the swap.
    const key = `k-${port}`;
    const withKey = `listen: { port: 0 }\nadmin: { port: 0 }\ninbound: { apiKeys: [${key}] }\n`;
    writeFileSync(file, configText([slow('{ minInterval: 1s, timeout: 20s }'), b], withKey));
    cli.child.kill('SIGHUP');
    const bUrl = `http://127.0.0.1:${port}`;
    await waitFor('the new port', async () => !(await connectionRefused(bUrl)));
    expect((await fetch(`${bUrl}/x`)).status).toBe(403);
    expect((await fetch(`${bUrl}/x`, { headers: { 'x-sidecar-key': key } })).status).toBe(200);
    expect(own.requests.map((r) => r.url)).toEqual(['/x']);
    expect(shared.requests).toEqual([]);
    expect(cli.stdout()).not.toContain(APPLIED);
    await front.down();
    await appliedWith(cli, (entry) => String(entry.added) === 'b');
    expect((await fetch(`${bUrl}/y`, { headers: { 'x-sidecar-key': key } })).status).toBe(200);
    expect(own.requests.map((r) => r.url)).toEqual(['/x', '/y']);
  });

  it('H2: a stop during a reload drains the port it added: the request in flight there gets its whole answer with connection: close, an idle connection there closes at once, exit 0', async () => {
    const w = await world();
    const front = await harness.faultFront(new URL(w.loginUrl).origin);
    const held = await startHeldUpstream();
    harness.defer(() => held.close());
    const viaFront: World = { ...w, loginUrl: front.url('/auth/login'), refreshUrl: front.url('/auth/refresh') };
    const slow = (refresh: string) => `${account(viaFront, 'a', held.url)}    refresh: ${refresh}\n`;
    const file = join(w.dir, 'c.yaml');
    const { cli, admin } = await sidecarWithStalledRefresh(file, configText([slow('{ minInterval: 1s }')]), front);
    const port = await freePort();
    const b = account(w, 'b', held.url).replace('route: { pathPrefix: /b }', `route: { port: ${port} }`);
    writeFileSync(file, configText([slow('{ minInterval: 1s, timeout: 20s }'), b]));
    cli.child.kill('SIGHUP');
    const bUrl = `http://127.0.0.1:${port}`;
    await waitFor('the new port', async () => !(await connectionRefused(bUrl)));
    // One keep-alive connection answered and idle, one with a request held at the upstream.
    const first = getOn(new Agent({ keepAlive: true }), `${bUrl}/first`);
    await held.arrived(1);
    held.received[0]?.answer(200);
    const idle = await first;
    expect(idle.status).toBe(200);
    // A request cut by the sidecar reads as the error it got (a `socket hang up`).
    const inFlight = getOn(new Agent({ keepAlive: true }), `${bUrl}/slow`).catch((error: Error) => error.message);
    await held.arrived(2);

    expect(idle.open()).toBe(true);
    cli.child.kill('SIGTERM');
    await cli.waitForLog((entry) => String(entry.msg).startsWith('stopping'));
    await idle.closed;
    await waitFor('the new port to stop accepting', () => connectionRefused(bUrl));
    // The old token request ends: the reload ends, applying nothing, while the new port drains.
    await front.down();
    const rejected = await cli.waitForLog((entry) => entry.msg === REJECTED);
    expect(rejected.problems).toEqual(['not serving (still starting, or stopping)']);
    expect(await reloads(admin, 'rejected')).toBe(1);
    held.received[1]?.answer(200);
    const answer = await inFlight;
    expect(typeof answer === 'string' ? answer : { ...answer, closed: undefined, open: undefined }).toEqual({
      status: 200,
      body: JSON.stringify({ seen: '/slow', bodyLength: 0 }),
      connection: 'close',
    });
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).not.toContain(APPLIED);
  });

  it('H2: /status shows the proxy of the upstream a reload moved the account to', async () => {
    const w = await world();
    const [first, second] = [await harness.recordingUpstream(), await harness.recordingUpstream()];
    const hostPort = (url: string) => new URL(url).host;
    const env = { HTTP_PROXY: 'http://127.0.0.1:9', NO_PROXY: [w.loginUrl, first.url].map(hostPort).join(',') };
    const file = join(w.dir, 'c.yaml');
    writeFileSync(file, configText([account(w, 'a', first.url)]));
    const { cli, admin } = await harness.launchCli(['--config', file], { env });
    await loggedIn(cli, 'a');
    const proxyOf = async () =>
      ((await (await fetch(`${admin}/status?format=json`)).json()) as { accounts: Record<string, { proxy: unknown }> })
        .accounts.a?.proxy;
    expect(await proxyOf()).toEqual({ upstream: 'direct', tokenEndpoint: 'direct' });
    writeFileSync(file, configText([account(w, 'a', second.url)]));
    cli.child.kill('SIGHUP');
    await appliedWith(cli, () => true);
    expect(await proxyOf()).toEqual({ upstream: 'http://127.0.0.1:9 (HTTP_PROXY)', tokenEndpoint: 'direct' });
  });

  it('H2: in quick mode SIGHUP is logged as needing --config and changes nothing; --watch-config there is a usage error', async () => {
    const w = await world();
    const upstream = await harness.recordingUpstream();
    const flags = [
      '--upstream',
      upstream.url,
      '--login-url',
      w.loginUrl,
      '--username',
      'u',
      '--password-file',
      w.passwordFile,
    ];
    const { cli, data, admin } = await harness.launchCli([
      ...flags,
      '--listen',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
    ]);
    cli.child.kill('SIGHUP');
    const line = await cli.waitForLog((entry) => entry.signal === 'SIGHUP');
    expect(line.msg).toMatch(/^reload needs --config FILE/);
    expect((await fetch(`${data}/x`)).status).toBe(200);
    expect(await reloads(admin, 'applied')).toBe(0);
    expect(await reloads(admin, 'rejected')).toBe(0);

    const usage = await harness.runCli([
      ...flags,
      '--listen',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
      '--watch-config',
    ]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--watch-config .*needs --config .*FILE/);
  });

  it('H2: reload time from SIGHUP to the applied log, with 1 and with 50 accounts (figures)', async () => {
    const w = await world();
    const upstream = await harness.recordingUpstream();
    const figures: string[] = [];
    for (const count of [1, 50]) {
      const file = join(w.dir, `c${count}.yaml`);
      const names = Array.from({ length: count }, (_, i) => `acct${i}`);
      writeFileSync(file, configText(names.map((name) => account(w, name, upstream.url))));
      const { cli } = await harness.launchCli(['--config', file]);
      for (const name of names) await loggedIn(cli, name);
      // Every account's upstream changes: each is rebuilt (its token kept).
      writeFileSync(file, configText(names.map((name) => account(w, name, `${upstream.url}/v2`))));
      const started = performance.now();
      cli.child.kill('SIGHUP');
      const applied = await appliedWith(cli, () => true);
      const ms = performance.now() - started;
      expect(Object.keys(applied.changed as object)).toHaveLength(count);
      figures.push(`${count} account(s): ${ms.toFixed(1)} ms signal to log, ${String(applied.durationMs)} ms inside`);
      cli.child.kill('SIGTERM');
      await cli.exited;
    }
    process.stdout.write(`H2 reload time: ${figures.join('; ')}\n`);
  });
});
