import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenCodec } from '../../src/stores/codec.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import type { StoreOperation } from '../../src/tokens/types.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { leastStoreAcl } from '../helpers/redis-acl.js';
import { redisCommand, startRedisProcess, waitFor, type RedisProcess } from '../helpers/redis-sentinel.js';
import { quietTokenEvents, testAccount, testTokenManager } from '../helpers/token-manager-setup.js';
import { SoakTokenServer } from '../soak/world.js';

/*
 * H1: a save that carries a new refresh token waits (WAIT 1, at most refresh.timeout) until a
 * replica has it. Real processes: a master with one replica, and a master with none.
 */
// A replica's full sync makes the master write an RDB file: into a temp directory, never the working tree.
const dir = mkdtempSync(join(tmpdir(), 'bs-replication-'));
const NO_PERSISTENCE = ['--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--dir', dir];
let master: RedisProcess;
let replica: RedisProcess;
let lonely: RedisProcess;

beforeAll(async () => {
  master = await startRedisProcess((port) => ['--port', String(port), ...NO_PERSISTENCE]);
  replica = await startRedisProcess((port) => [
    '--port',
    String(port),
    '--replicaof',
    '127.0.0.1',
    String(master.port),
    ...NO_PERSISTENCE,
  ]);
  lonely = await startRedisProcess((port) => ['--port', String(port), ...NO_PERSISTENCE]);
  await waitFor('the replica in sync', async () =>
    /master_link_status:up/.test(await redisCommand(replica.port, 'INFO', 'replication')),
  );
}, 30_000);
afterAll(async () => {
  replica.signal('SIGCONT');
  await Promise.all([master, replica, lonely].map((each) => each.kill()));
  rmSync(dir, { recursive: true, force: true });
});

/** How often the server ran WAIT, from its own command statistics. */
async function waitCalls(port: number): Promise<number> {
  const match = /cmdstat_wait:calls=(\d+)/.exec(await redisCommand(port, 'INFO', 'commandstats'));
  return match ? Number(match[1]) : 0;
}

/** A Redis store on the server at `port`, its keys under `keyPrefix`, logging to `log`; ready. */
async function readyStore(
  port: number,
  keyPrefix: string,
  log = captureLogger(),
  user?: { username: string; password: string },
): Promise<RedisTokenStore> {
  const store = new RedisTokenStore({
    url: `redis://127.0.0.1:${port}`,
    ...(user && { username: user.username, password: new Secret(user.password) }),
    keyPrefix,
    codec: new TokenCodec(),
    logger: log.logger,
  });
  await store.ready();
  return store;
}

let prefixes = 0;
async function runOneLogin(port: number, refreshTimeout = '1s', user?: { username: string; password: string }) {
  const keyPrefix = `replication${(prefixes += 1)}:`;
  const store = await readyStore(port, keyPrefix, undefined, user);
  const clock = new FakeClock();
  const server = new SoakTokenServer(() => clock.now(), 600);
  const failed: StoreOperation[] = [];
  const log = captureLogger();
  const manager = testTokenManager({
    clock,
    store,
    send: server.send,
    account: testAccount(undefined, { refresh: { timeout: refreshTimeout } }),
    events: quietTokenEvents({ storeError: (operation) => failed.push(operation) }),
    logger: log.logger,
  });
  try {
    await manager.start();
    await manager.settled();
    const afterwards = await store.load('acct').then(
      () => 'loaded',
      (error: unknown) => String(error),
    );
    return { failed, log, state: manager.status().state, key: `${keyPrefix}token:acct`, afterwards };
  } finally {
    await manager.stop();
    await store.close();
  }
}

describe('H1 waiting for a replica after a refresh token rotates', () => {
  it('H1: with a replica connected, the save of a new refresh token runs WAIT and the replica holds the record when the token request ends', async () => {
    const before = await waitCalls(master.port);
    const { failed, state, key } = await runOneLogin(master.port);
    expect(await waitCalls(master.port)).toBeGreaterThan(before);
    expect(failed).toEqual([]);
    expect(state).toBe('valid');
    expect(await redisCommand(replica.port, 'EXISTS', key)).toBe(':1\r\n');
  });

  it('H1: as a Redis user with the least ACL the documentation gives, the save still asks whether a replica is connected and runs WAIT', async () => {
    await redisCommand(master.port, 'ACL', ...leastStoreAcl('least', 'least-password', 'replication'));
    const before = await waitCalls(master.port);
    const { failed, state, key } = await runOneLogin(master.port, '1s', {
      username: 'least',
      password: 'least-password',
    });
    expect(await waitCalls(master.port)).toBeGreaterThan(before);
    expect(failed).toEqual([]);
    expect(state).toBe('valid');
    expect(await redisCommand(replica.port, 'EXISTS', key)).toBe(':1\r\n');
  });

  it('H1: a frozen replica (connected, never acknowledging) bounds the wait by refresh.timeout: counted as store error "replicate", logged, and the new token used', async () => {
    replica.signal('SIGSTOP');
    try {
      const { failed, log, state } = await runOneLogin(master.port);
      expect(failed).toEqual(['replicate']);
      expect(state).toBe('valid');
      const warning = log.lines().find((line) => line.operation === 'replicate');
      expect(warning?.msg).toMatch(/no replica acknowledged it in time; a failover now could lose it/);
      expect(log.text()).not.toMatch(/tok-|ref-/);
    } finally {
      replica.signal('SIGCONT');
    }
  });

  it('H1: a wait longer than the store command deadline (refresh.timeout 10s) ends in time: WAIT answers before the client gives up, and the connection serves the next command', async () => {
    replica.signal('SIGSTOP');
    try {
      const { failed, log, afterwards } = await runOneLogin(master.port, '10s');
      expect(failed).toEqual(['replicate']);
      expect(log.lines().find((line) => line.operation === 'replicate')?.msg).toMatch(
        /no replica acknowledged it in time/,
      );
      expect(afterwards).toBe('loaded');
    } finally {
      replica.signal('SIGCONT');
    }
  });

  it('H1: a master with no replica connected is not asked to WAIT (no wait for a replica that does not exist)', async () => {
    const { failed, state } = await runOneLogin(lonely.port);
    expect(await waitCalls(lonely.port)).toBe(0);
    expect(failed).toEqual([]);
    expect(state).toBe('valid');
  });

  it('H1: a master whose replica was connected and is gone says so once (nothing is replicated until it is back), not on a master that never had one', async () => {
    const log = captureLogger();
    const store = await readyStore(master.port, 'replica-gone:', log);
    try {
      expect(await store.replicate('acct', 500)).toBe(true);
      await redisCommand(replica.port, 'REPLICAOF', 'NO', 'ONE');
      await waitFor('the master without replica', async () =>
        /connected_slaves:0/.test(await redisCommand(master.port, 'INFO', 'replication')),
      );
      await store.replicate('acct', 500);
      await store.replicate('acct', 500);
      const warnings = log.lines().filter((line) => line.level === 40);
      expect(warnings).toHaveLength(1);
      expect(String(warnings[0]?.msg)).toMatch(/no replica connected/);
    } finally {
      await redisCommand(replica.port, 'REPLICAOF', '127.0.0.1', String(master.port));
      await waitFor('the replica in sync again', async () =>
        /master_link_status:up/.test(await redisCommand(replica.port, 'INFO', 'replication')),
      );
      await store.close();
    }
    const lonelyLog = captureLogger();
    const lonelyStore = await readyStore(lonely.port, 'never-replicated:', lonelyLog);
    await lonelyStore.replicate('acct', 500);
    await lonelyStore.close();
    expect(lonelyLog.lines().filter((line) => line.level === 40)).toEqual([]);
  }, 30_000);
});
