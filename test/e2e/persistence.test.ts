import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type ChainableCommander } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import type { SessionTokenServer } from '../../src/demo/session-token-server.js';
import type { FaultTokenServer } from '../helpers/fault-token-server.js';
import { useHarness, type LaunchedCli } from '../helpers/harness.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server.js';
import type { DemoUpstream } from '../../src/demo/upstream.js';
import { TokenCodec } from '../../src/stores/codec.js';
import { Secret } from '../../src/util/secret.js';
import type { RunningCli } from '../helpers/spawn-cli.js';

/*
 * T9 and T10 with real processes: the built CLI, a real token server with single-use refresh
 * tokens, and a private redis-server. These run in real time (several processes cannot share a
 * fake clock), with short token lifetimes. They wait on log lines and conditions; the only waits on
 * time pace the client load (10 rounds a second, every 250 ms during an outage), never an assertion.
 */

const harness = useHarness();

interface World {
  dir: string;
  tokenServer: SessionTokenServer;
  front: FaultTokenServer;
  upstream: DemoUpstream;
}

async function world(lifetimeSeconds: number): Promise<World> {
  const dir = harness.tempDir('bs-persist-');
  const { tokenServer, password } = await harness.sessionTokenServer({ lifetimeSeconds });
  writeFileSync(join(dir, 'password'), password, { mode: 0o600 });
  const front = await harness.faultFront(tokenServer.url);
  const upstream = await harness.demoUpstream((token) => tokenServer.isValidToken(token));
  return { dir, tokenServer, front, upstream };
}

function writeConfig(w: World, name: string, store: string, refresh = '{ minInterval: 1s, timeout: 2s }'): string {
  const path = join(w.dir, `${name}.yaml`);
  writeFileSync(
    path,
    `listen: { port: 0 }
admin: { port: 0 }
store: ${store}
accounts:
  fleet:
    upstream: ${w.upstream.url}
    default: true
    refresh: ${refresh}
    auth: { flow: session, loginUrl: ${w.front.url('/auth/login')}, refreshUrl: ${w.front.url('/auth/refresh')}, username: u, passwordFile: ${join(w.dir, 'password')} }
`,
  );
  return path;
}

function launch(config: string): Promise<LaunchedCli> {
  return harness.launchCli(['--config', config]);
}

/** The fingerprint of the token a replica serves (from /status), to tell replicas share one token. */
async function fingerprintOf(replica: { admin: string }): Promise<string | null> {
  return (
    (await (await fetch(`${replica.admin}/status`)).json()) as { accounts: { fleet: { fingerprint: string | null } } }
  ).accounts.fleet.fingerprint;
}

/** Waits until every replica serves the same token, and it is not `previous`: a new token was shared. */
async function waitForOneNewToken(replicas: Array<{ admin: string }>, previous: string | null): Promise<void> {
  await vi.waitFor(
    async () => {
      const fingerprints = await Promise.all(replicas.map(fingerprintOf));
      expect(fingerprints[0]).not.toBe(previous);
      expect(new Set(fingerprints).size).toBe(1);
    },
    { timeout: 20_000 },
  );
}

/** The fingerprint of the access token in the account's record (these replicas seal nothing: no key), or undefined. */
async function storedFingerprint(client: Redis, key: string): Promise<string | undefined> {
  const raw = await client.get(key);
  return raw === null
    ? undefined
    : new TokenCodec().decode('fleet', JSON.parse(raw) as unknown).state.accessToken.fingerprint();
}

/**
 * Writes junk over the account's record atomically (WATCH/MULTI), and only while the record holds
 * the token every replica serves. Junk written over a save that another replica has not read yet
 * would be a different fault: that save is lost, and the replica still holding the refresh token
 * it spent may send it once (docs/contract.md, R7's last choice). Under load that window is real.
 */
async function plantOverSharedRecord(
  client: Redis,
  key: string,
  replicas: Array<{ admin: string }>,
  plant: (multi: ChainableCommander) => unknown,
): Promise<void> {
  await vi.waitFor(
    async () => {
      await client.watch(key);
      try {
        const served = new Set(await Promise.all(replicas.map(fingerprintOf)));
        expect([...served]).toEqual([await storedFingerprint(client, key)]);
      } catch (error) {
        await client.unwatch();
        throw error;
      }
      const multi = client.multi();
      plant(multi);
      // Null: the record changed after WATCH (a save), so nothing was planted: look again.
      const results = await multi.exec();
      expect(results).not.toBeNull();
      // Each planted command succeeded (a reply error would leave the record as it was).
      expect(results?.map(([error]) => error)).toEqual(results?.map(() => null));
    },
    { timeout: 20_000 },
  );
}

/** The warning of a replica that found a record it cannot use (R7). */
const SET_ASIDE = 'redis record cannot be used: set aside, the account goes on as with no stored state';

function countLines(cli: RunningCli, msg: string): number {
  return cli
    .stdout()
    .split('\n')
    .filter((line) => line.includes(`"msg":"${msg}"`)).length;
}

describe('T9: file store', () => {
  it('T9: after SIGKILL and a restart on the same state file: no second login, the chain goes on with the newest refresh token, the file is 0600 throughout', async () => {
    const w = await world(4);
    const state = join(w.dir, 'state.json');
    const config = writeConfig(w, 'file', `{ type: file, path: ${state} }`);
    const first = await launch(config);
    await first.cli.waitForLog((entry) => entry.msg === 'token request: refresh succeeded');
    expect(statSync(state).mode & 0o777).toBe(0o600);
    first.cli.child.kill('SIGKILL');
    await first.cli.exited;
    expect(w.tokenServer.stats).toMatchObject({ logins: 1, refreshes: 1 });

    const second = await launch(config);
    expect(second.cli.stdout()).not.toContain('token request: login');
    expect((await fetch(`${second.data}/vehicles`)).status).toBe(200);
    await second.cli.waitForLog((entry) => entry.msg === 'token request: refresh succeeded');
    expect(w.tokenServer.stats).toMatchObject({ logins: 1, refreshes: 2, refreshTokenReuse: 0, rejectedRefreshes: 0 });
    expect(statSync(state).mode & 0o777).toBe(0o600);
    expect(existsSync(state)).toBe(true);
  });
});

describe('T10: replicas sharing Redis', () => {
  let redis: PrivateRedis;

  async function startRedis(): Promise<PrivateRedis> {
    redis = await startPrivateRedis();
    harness.defer(() => redis.close());
    return redis;
  }
  it('T10: three replicas, 6 s single-use tokens, 10 req/s each for 60 s: every request 200, no refresh token reused, token requests within 1.5x of one process', async () => {
    const w = await world(6);
    await startRedis();
    const config = writeConfig(w, 'replica', `{ type: redis, url: "${redis.url}", keyPrefix: "t10:" }`);
    const replicas = await Promise.all([launch(config), launch(config), launch(config)]);
    await vi.waitFor(() => expect(w.tokenServer.stats.logins).toBe(1), { timeout: 10_000 });
    for (const replica of replicas)
      await vi.waitFor(async () => expect((await fetch(`${replica.admin}/readyz`)).status).toBe(200), {
        timeout: 10_000,
      });

    const seconds = 60;
    const statuses = new Map<number, number>();
    const startedAt = Date.now();
    const before = w.tokenServer.stats.requests;
    for (let tick = 0; tick < seconds * 10; tick++) {
      const answers = await Promise.all(
        replicas.map((replica) => fetch(`${replica.data}/vehicles`).then((r) => r.status)),
      );
      for (const status of answers) statuses.set(status, (statuses.get(status) ?? 0) + 1);
      // Paced at 10 rounds a second: load generation, not a timed assertion.
      const due = startedAt + (tick + 1) * 100;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
    }
    expect(Object.fromEntries(statuses)).toEqual({ 200: seconds * 10 * 3 });
    expect(w.tokenServer.stats.refreshTokenReuse).toBe(0);
    expect(w.tokenServer.stats.rejectedRefreshes).toBe(0);
    expect(w.tokenServer.stats.logins).toBe(1);
    const elapsed = (Date.now() - startedAt) / 1000;
    const oneProcess = elapsed / (0.8 * 6 * 0.95) + 1;
    expect(w.tokenServer.stats.requests - before).toBeLessThanOrEqual(Math.ceil(1.5 * oneProcess));
  }, 120_000);

  it('T10: the lock holder killed mid-refresh: another replica takes over after the lock expires and the chain is not broken', async () => {
    const w = await world(6);
    await startRedis();
    // A long token timeout keeps the stalled request (and so the lock) held until we kill its holder.
    const config = writeConfig(
      w,
      'kill',
      `{ type: redis, url: "${redis.url}", keyPrefix: "kill:" }`,
      '{ minInterval: 1s, timeout: 5s }',
    );
    const replicas = await Promise.all([launch(config), launch(config), launch(config)]);
    await vi.waitFor(() => expect(w.tokenServer.stats.logins).toBe(1), { timeout: 10_000 });
    // The next refresh is held at the token endpoint (never reaches the real server).
    w.front.mode = 'stall';
    const received = w.front.received;
    await vi.waitFor(() => expect(w.front.received).toBeGreaterThan(received), { timeout: 15_000 });
    const client = new Redis({ path: new URL(redis.url).pathname });
    harness.defer(() => client.disconnect());
    const holder = await client.get('kill:lock:fleet');
    const pid = Number(holder?.split(':')[1]);
    const victim = replicas.find((replica) => replica.cli.child.pid === pid);
    expect(victim).toBeDefined();
    victim?.cli.child.kill('SIGKILL');
    w.front.mode = 'pass';
    const survivors = replicas.filter((replica) => replica !== victim);
    // After the lock expires (timeout 5 s + 5 s margin), a survivor refreshes with the stored, unspent token.
    await vi.waitFor(() => expect(w.tokenServer.stats.refreshes).toBeGreaterThanOrEqual(1), { timeout: 20_000 });
    for (const survivor of survivors)
      await vi.waitFor(async () => expect((await fetch(`${survivor.data}/vehicles`)).status).toBe(200), {
        timeout: 15_000,
      });
    expect(w.tokenServer.stats).toMatchObject({ logins: 1, refreshTokenReuse: 0, rejectedRefreshes: 0 });
  });

  it('T10: Redis stopped for 30 s: valid tokens keep being served with no client error, /readyz and a metric say so, and the chain resumes after', async () => {
    const w = await world(45);
    await startRedis();
    const config = writeConfig(
      w,
      'outage',
      `{ type: redis, url: "${redis.url}", keyPrefix: "outage:" }`,
      '{ minInterval: 1s, timeout: 1s }',
    );
    const replicas = await Promise.all([launch(config), launch(config)]);
    await vi.waitFor(() => expect(w.tokenServer.stats.logins).toBe(1), { timeout: 10_000 });
    for (const replica of replicas)
      await vi.waitFor(async () => expect((await fetch(`${replica.admin}/readyz`)).status).toBe(200), {
        timeout: 10_000,
      });
    const loggedIn = await fingerprintOf(replicas[0] as (typeof replicas)[number]);
    await redis.stop();
    const outageEnds = Date.now() + 30_000;
    // An operator asks for a token during the outage: the lock cannot be taken, the store is reported down.
    await fetch(`${replicas[0]?.admin}/accounts/fleet/refresh`, { method: 'POST' });
    await vi.waitFor(
      async () =>
        expect(await (await fetch(`${replicas[0]?.admin}/metrics`)).text()).toMatch(
          /bearer_sidecar_store_up\{account="fleet"\} 0/,
        ),
      { timeout: 10_000 },
    );
    const ready = await fetch(`${replicas[0]?.admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      warnings: { fleet: expect.arrayContaining([expect.stringMatching(/redis store/)]) },
    });
    const statuses = new Set<number>();
    while (Date.now() < outageEnds) {
      for (const replica of replicas) statuses.add((await fetch(`${replica.data}/vehicles`)).status);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect([...statuses]).toEqual([200]);
    await redis.start();
    // The scheduled refresh (at ~34-36 s) now finds the emptied store, takes the lock and writes its
    // state above the revision the other replica holds, which adopts it instead of refreshing too
    // with the refresh token just spent. Both serve the new token before the chain is checked.
    await vi.waitFor(() => expect(w.tokenServer.stats.refreshes).toBeGreaterThanOrEqual(1), { timeout: 20_000 });
    await waitForOneNewToken(replicas, loggedIn);
    for (const replica of replicas) expect((await fetch(`${replica.data}/vehicles`)).status).toBe(200);
    expect(w.tokenServer.stats).toMatchObject({ logins: 1, refreshes: 1, refreshTokenReuse: 0, rejectedRefreshes: 0 });
    expect(countLines(replicas[0]?.cli as RunningCli, 'redis store reachable again')).toBeGreaterThanOrEqual(1);
  }, 120_000);

  describe('R7 corrupt shared state', () => {
    it('R7: junk written over the shared record three times (not JSON, a hash, a record sealed with a foreign key): each is set aside once, both replicas go on sharing one chain, no refresh token reused, no second login', async () => {
      const w = await world(6);
      await startRedis();
      const config = writeConfig(w, 'junk', `{ type: redis, url: "${redis.url}", keyPrefix: "r7:" }`);
      const replicas = await Promise.all([launch(config), launch(config)]);
      await vi.waitFor(() => expect(w.tokenServer.stats.logins).toBe(1), { timeout: 10_000 });
      for (const replica of replicas)
        await vi.waitFor(async () => expect((await fetch(`${replica.admin}/readyz`)).status).toBe(200), {
          timeout: 10_000,
        });
      const client = new Redis({ path: new URL(redis.url).pathname });
      harness.defer(() => client.disconnect());
      const key = 'r7:token:fleet';
      // A well-formed record with a revision far above the real one, that these replicas (no key) cannot open.
      const foreign = new TokenCodec(randomBytes(32)).encode('fleet', {
        revision: 1000,
        state: {
          accessToken: new Secret('planted-access'),
          refreshToken: new Secret('planted-refresh'),
          obtainedAt: Date.now(),
          expiresAt: Date.now() + 60_000,
          lifetimeMs: 60_000,
        },
      });
      const junk: Array<(multi: ChainableCommander) => unknown> = [
        (multi) => multi.set(key, '{"accessToken": "planted-not-json'),
        (multi) => multi.del(key).hset(key, 'accessToken', 'planted-hash'),
        (multi) => multi.set(key, JSON.stringify(foreign)),
      ];

      for (const plant of junk) {
        const before = await fingerprintOf(replicas[0] as (typeof replicas)[number]);
        await plantOverSharedRecord(client, key, replicas, plant);
        // The next scheduled refresh finds the junk, sets it aside, and writes a record the other replica adopts.
        await waitForOneNewToken(replicas, before);
        for (const replica of replicas) expect((await fetch(`${replica.data}/vehicles`)).status).toBe(200);
      }

      expect(w.tokenServer.stats).toMatchObject({ logins: 1, refreshTokenReuse: 0, rejectedRefreshes: 0 });
      expect(await client.keys(`${key}:corrupt:*`)).toHaveLength(3);
      expect(replicas.reduce((sum, replica) => sum + countLines(replica.cli, SET_ASIDE), 0)).toBe(3);
      for (const replica of replicas) expect(replica.cli.stdout()).not.toContain('planted');
    }, 120_000);

    it('R7: junk written over a save that a paused replica has not read: that replica sends its spent refresh token at most once, then both go on sharing one chain, no loop of token requests', async () => {
      const w = await world(6);
      await startRedis();
      const config = writeConfig(w, 'clobber', `{ type: redis, url: "${redis.url}", keyPrefix: "r7c:" }`);
      const [active, paused] = (await Promise.all([launch(config), launch(config)])) as [LaunchedCli, LaunchedCli];
      for (const replica of [active, paused])
        await vi.waitFor(async () => expect((await fetch(`${replica.admin}/readyz`)).status).toBe(200), {
          timeout: 10_000,
        });
      const client = new Redis({ path: new URL(redis.url).pathname });
      harness.defer(() => client.disconnect());
      const key = 'r7c:token:fleet';
      // Paused (as a process starved of CPU is), it cannot read the next save before the junk lands.
      expect(paused.cli.child.kill('SIGSTOP')).toBe(true);
      harness.defer(() => paused.cli.child.kill('SIGCONT'));
      // The active replica serves a new token only once it has saved it (T3): a save made after the
      // pause, which the paused replica has not read. (The token server counts a refresh earlier,
      // when it answers: junk planted then would land before that save, which sets it aside.)
      const before = await fingerprintOf(active);
      await vi.waitFor(
        async () => {
          const served = await fingerprintOf(active);
          expect(served).not.toBe(before);
          expect(await storedFingerprint(client, key)).toBe(served);
        },
        { timeout: 15_000 },
      );
      await client.set(key, '{"accessToken": "planted-over-a-save');
      paused.cli.child.kill('SIGCONT');

      // Both serve one token again, newer than the one the junk hid.
      const hidden = await fingerprintOf(active);
      await waitForOneNewToken([active, paused], hidden);
      for (const replica of [active, paused]) expect((await fetch(`${replica.data}/vehicles`)).status).toBe(200);
      // The junk was found and set aside once (by whichever replica read it first), never written over.
      expect(countLines(paused.cli, SET_ASIDE) + countLines(active.cli, SET_ASIDE)).toBe(1);
      expect(w.tokenServer.stats.refreshTokenReuse).toBeLessThanOrEqual(1);
      expect(w.tokenServer.stats.logins).toBeLessThanOrEqual(2);
      // And the chain goes on from there with refreshes alone: one more shared token, no more logins.
      const { logins, rejectedRefreshes } = w.tokenServer.stats;
      await waitForOneNewToken([active, paused], await fingerprintOf(active));
      expect(w.tokenServer.stats).toMatchObject({ logins, rejectedRefreshes });
      for (const replica of [active, paused]) expect(replica.cli.stdout()).not.toContain('planted');
    }, 120_000);
  });
});
