import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenCodec } from '../../src/stores/codec.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import { silentLogger } from '../../src/util/logger.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { leastStoreAcl } from '../helpers/redis-acl.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeSentinel } from '../helpers/fake-sentinel.js';
import {
  redisCommand,
  startRedisProcess,
  startSentinelGroup,
  waitFor,
  type SentinelGroup,
} from '../helpers/redis-sentinel.js';
import { testTokenManager } from '../helpers/token-manager-setup.js';
import { SoakTokenServer } from '../soak/world.js';
import { describeTokenStore, makeTokenState, saveUntilHeard } from './token-store.suite.js';

/*
 * H1: the Redis store on a Sentinel group (a master, a replica, three sentinels: real processes on
 * free ports). The same conformance suite as every other store, then a failover under load.
 */
let group: SentinelGroup;
beforeAll(async () => {
  group = await startSentinelGroup();
}, 30_000);
afterAll(async () => {
  await group.close();
});

let prefixes = 0;
async function openStore(keyPrefix: string, user?: { username: string; password: Secret }): Promise<RedisTokenStore> {
  const store = new RedisTokenStore({
    sentinels: group.sentinels,
    name: group.name,
    ...user,
    keyPrefix,
    codec: new TokenCodec(),
    logger: silentLogger(),
    // A Cluster or Sentinel client's first connection is several round trips; CI machines are busy.
    readyTimeoutMs: 20_000,
  });
  await store.ready();
  return store;
}

describeTokenStore(
  'redis sentinel',
  async () => {
    const keyPrefix = `sentinel-suite${(prefixes += 1)}:`;
    const store = await openStore(keyPrefix);
    return { store, other: () => openStore(keyPrefix), cleanup: () => store.close() };
  },
  { shared: true },
);

describe('H1 Redis Sentinel as a least-ACL user', () => {
  it('H1: through the sentinels, as a Redis user with the least ACL the documentation gives (no extra command for Sentinel): save, load, lock, a WAIT for the replica, and another replica hears the save', async () => {
    for (const node of [group.master, group.replica])
      await redisCommand(node.port, 'ACL', ...leastStoreAcl('least', 'least-password', 'sentinel-least'));
    const user = { username: 'least', password: new Secret('least-password') };
    const [store, other] = [await openStore('sentinel-least:', user), await openStore('sentinel-least:', user)];
    let notified = 0;
    try {
      store.subscribe('acct', () => (notified += 1));
      await saveUntilHeard(other, () => notified, 'least');
      expect((await store.load('acct'))?.state.accessToken.reveal()).toContain('access-least');
      expect(await store.obtainLock('acct', 1_000)).toBeDefined();
      expect(await store.replicate('acct', 1_000)).toBe(true);
    } finally {
      await Promise.all([store.close(), other.close()]);
    }
  });
});

const MINUTE = 60_000;

describe('H1 Redis Sentinel failover', () => {
  it('H1: two replicas share a Sentinel store and the master is SIGKILLed mid-run: no refresh token is sent twice, tokens keep coming', async () => {
    const clock = new FakeClock();
    const server = new SoakTokenServer(() => clock.now(), 600);
    const stores = [await openStore('failover:'), await openStore('failover:')];
    const managers = stores.map((store, index) =>
      testTokenManager({ clock, store, send: server.send, random: () => (0.5 + index * 0.3) % 1 }),
    );
    const settle = () => Promise.all(managers.map((m) => m.settled())).then(() => undefined);
    const run = async (minutes: number) => {
      for (let i = 0; i < minutes; i++) await clock.advance(MINUTE, settle);
    };
    try {
      await Promise.all(managers.map((m) => m.start()));
      await run(30); // a few refreshes on the first master
      const beforeFailover = server.requestTimes.length;
      expect(beforeFailover).toBeGreaterThanOrEqual(3);

      const killed = group.master.kill();
      await run(10); // token time goes on while the store is unreachable
      await killed;
      await waitFor('the replica promoted', async () => (await group.masterPort()) === group.replica.port);
      await waitFor('both stores on the new master', async () => {
        await Promise.all(stores.map((store) => store.load('acct')));
        return true;
      });
      const afterFailover = server.requestTimes.length;
      await run(40);

      expect(server.reusedRefreshTokens).toEqual([]);
      expect(server.requestTimes.length - afterFailover).toBeGreaterThanOrEqual(3);
      for (const manager of managers) expect(manager.status().state).toBe('valid');
      // Clients see no 401: each replica serves a token the server holds valid, and the store holds one too.
      expect(await server.judgeServed(stores[0]!, managers)).toEqual({ stored: 'valid', served: ['valid', 'valid'] });
    } finally {
      await Promise.all(managers.map((m) => m.stop()));
      await Promise.all(stores.map((store) => store.close()));
    }
  }, 60_000);
});

describe('H1 Redis Sentinel: a switch-master notice during a reconnection', () => {
  it('H1: a switch-master notice that arrives while the client asks a sentinel for the master does not leave the store disconnected for good: it reaches the new master', async () => {
    const first = await startRedisProcess((port) => ['--port', String(port), '--save', '', '--appendonly', 'no']);
    const second = await startRedisProcess((port) => ['--port', String(port), '--save', '', '--appendonly', 'no']);
    const sentinel = await new FakeSentinel({ host: '127.0.0.1', port: first.port }).start();
    const log = captureLogger();
    const openFakeSentinelStore = (logger = silentLogger()) =>
      new RedisTokenStore({
        sentinels: [`127.0.0.1:${sentinel.port}`],
        name: 'mymaster',
        keyPrefix: 'switch:',
        codec: new TokenCodec(),
        logger,
      });
    const store = openFakeSentinelStore(log.logger);
    let other: RedisTokenStore | undefined;
    try {
      await store.ready();
      // One failover detector per connection (commands, notifications), each subscribed.
      await waitFor('both failover detectors subscribed', async () => sentinel.subscriberCount === 2);

      // The master dies; both connections' reconnections ask the sentinel where the master is now,
      // and the switch-master notice lands while those questions are unanswered.
      const release = sentinel.holdAnswers();
      await first.kill();
      await waitFor('both connections asking for the master', async () => sentinel.heldQuestions === 2);
      sentinel.setMaster({ host: '127.0.0.1', port: second.port });
      expect(sentinel.publishSwitchMaster('mymaster', { host: '127.0.0.1', port: first.port })).toBe(2);
      // Each detector, on the notice, closes its own sentinel connections: both notices were handled.
      await waitFor('both notices handled', async () => sentinel.subscriberCount === 0);
      release();

      await waitFor('the store on the new master', async () => {
        await store.load('acct');
        return true;
      });
      await store.save('acct', makeTokenState('after-switch'));
      expect(await redisCommand(second.port, 'EXISTS', 'switch:token:acct')).toBe(':1\r\n');

      // Its notifications connection came back too: another replica's save reaches it.
      let notified = 0;
      store.subscribe('acct', () => (notified += 1));
      other = await openFakeSentinelStore();
      await waitFor('a save by another replica notified', async () => {
        await other?.save('acct', makeTokenState('from-another-replica'));
        return notified > 0;
      });
      // Said once per client it had to start again, where, and nothing more.
      const revived = log.lines().filter((line) => String(line.msg).includes('stopped reconnecting'));
      const where = `sentinels 127.0.0.1:${sentinel.port} (mymaster)`;
      expect(revived.map((line) => [line.level, line.client, line.redis]).sort()).toEqual([
        [40, 'commands', where],
        [40, 'notifications', where],
      ]);
    } finally {
      await other?.close();
      await store.close();
      await sentinel.close();
      await Promise.all([first.kill(), second.kill()]);
    }
  }, 30_000);
});
