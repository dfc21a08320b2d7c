import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenCodec } from '../../src/stores/codec.js';
import { parseAddress } from '../../src/stores/redis-connect.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import { RESUBSCRIBE_EVERY_MS } from '../../src/stores/redis-notifications.js';
import { silentLogger } from '../../src/util/logger.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { leastStoreAcl } from '../helpers/redis-acl.js';
import { startRedisCluster, type RedisClusterGroup } from '../helpers/redis-cluster.js';
import { redisCommand, waitFor } from '../helpers/redis-sentinel.js';
import { testTokenManager } from '../helpers/token-manager-setup.js';
import { SoakTokenServer } from '../soak/world.js';
import { describeTokenStore, makeTokenState, saveUntilHeard } from './token-store.suite.js';

/*
 * H1: the Redis store on a Redis Cluster of three masters (real processes on free ports, created
 * with redis-cli --cluster create). The same conformance suite as every other store; an account's
 * keys share one hash slot, so every store script runs on one node.
 */
let cluster: RedisClusterGroup;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 30_000);
afterAll(async () => {
  await cluster.close();
});

let prefixes = 0;
async function openStore(
  keyPrefix: string,
  now?: () => number,
  user?: { username: string; password: string },
): Promise<RedisTokenStore> {
  const store = new RedisTokenStore({
    cluster: cluster.nodes,
    ...(user && { username: user.username, password: new Secret(user.password) }),
    keyPrefix,
    codec: new TokenCodec(),
    logger: silentLogger(),
    // A Cluster or Sentinel client's first connection is several round trips; CI machines are busy.
    readyTimeoutMs: 20_000,
    ...(now === undefined ? {} : { now }),
  });
  await store.ready();
  return store;
}

describeTokenStore(
  'redis cluster',
  async () => {
    const keyPrefix = `cluster-suite${(prefixes += 1)}:`;
    const store = await openStore(keyPrefix);
    return { store, other: () => openStore(keyPrefix), cleanup: () => store.close() };
  },
  { shared: true },
);

const MINUTE = 60_000;

describe('H1 Redis Cluster', () => {
  it("H1: an account's token and lock keys share a hash slot, and accounts spread over the masters", async () => {
    const client = new Cluster(cluster.nodes.map(parseAddress));
    try {
      const store = await openStore('slots:');
      const accounts = Array.from({ length: 12 }, (_, i) => `account-${i}`);
      for (const account of accounts) {
        await store.save(account, makeTokenState(account));
        expect(await store.obtainLock(account, 1_000)).toBeDefined();
      }
      await store.close();
      const slots = new Set<number>();
      for (const account of accounts) {
        const [token, lock] = await Promise.all(
          [`slots:token:{${account}}`, `slots:lock:{${account}}`].map(async (key) => {
            expect(await client.exists(key)).toBe(1);
            return Number(await client.cluster('KEYSLOT', key));
          }),
        );
        expect(lock).toBe(token);
        slots.add(token!);
      }
      // With 12 accounts on 3 masters, a layout that put them all in one slot would show here.
      expect(slots.size).toBeGreaterThan(1);
    } finally {
      client.disconnect();
    }
  });

  it("H1: waiting for a replica asks the master that serves the account's slot, the slot computed locally (no CLUSTER KEYSLOT per save; none of these masters has a replica: true at once)", async () => {
    const keyslotCalls = async () => {
      let calls = 0;
      for (const node of cluster.nodes) {
        const stats = await redisCommand(parseAddress(node).port, 'INFO', 'commandstats');
        calls += Number(/cmdstat_cluster\|keyslot:calls=(\d+)/.exec(stats)?.[1] ?? 0);
      }
      return calls;
    };
    const store = await openStore('replicate:');
    try {
      const before = await keyslotCalls();
      for (const account of ['account-a', 'account-b', 'account-c', 'account-d']) {
        await store.save(account, makeTokenState(account));
        expect(await store.replicate(account, 60_000)).toBe(true);
      }
      expect(await keyslotCalls()).toBe(before);
    } finally {
      await store.close();
    }
  });

  it('H1: a record that cannot be used is set aside in its own slot (R7 in a Cluster): <key>:corrupt:<time>', async () => {
    const client = new Cluster(cluster.nodes.map(parseAddress));
    const now = Date.parse('2026-01-01T00:00:00Z');
    try {
      await client.set('corrupt:token:{acct}', 'not json');
      const store = await openStore('corrupt:', () => now);
      expect(await store.load('acct')).toBeUndefined();
      await store.close();
      expect(await client.get(`corrupt:token:{acct}:corrupt:${new Date(now).toISOString()}`)).toBe('not json');
      expect(await client.exists('corrupt:token:{acct}')).toBe(0);
    } finally {
      client.disconnect();
    }
  });

  const LEAST = { username: 'least', password: 'least-password' };
  for (const user of [undefined, LEAST])
    it(`H1: two replicas share a Cluster store with single-use refresh tokens: one chain, no refresh token sent twice${user ? ', as a Redis user with the least ACL the documentation gives (and CLUSTER SLOTS and INFO)' : ''}`, async () => {
      const clock = new FakeClock();
      const server = new SoakTokenServer(() => clock.now(), 600);
      const keyPrefix = user ? 'least-pair:' : 'pair:';
      if (user)
        for (const node of cluster.nodes)
          await redisCommand(
            parseAddress(node).port,
            'ACL',
            ...leastStoreAcl(user.username, user.password, keyPrefix),
            '+cluster|slots',
            '+cluster|info',
          );
      const stores = [await openStore(keyPrefix, undefined, user), await openStore(keyPrefix, undefined, user)];
      const managers = stores.map((store, index) =>
        testTokenManager({ clock, store, send: server.send, random: () => (0.5 + index * 0.3) % 1 }),
      );
      const settle = () => Promise.all(managers.map((m) => m.settled())).then(() => undefined);
      try {
        await Promise.all(managers.map((m) => m.start()));
        for (let i = 0; i < 60; i++) await clock.advance(MINUTE, settle);
        expect(server.reusedRefreshTokens).toEqual([]);
        expect(server.requestTimes.length).toBeGreaterThanOrEqual(6);
        // Clients see no 401: each replica serves a token the server holds valid, and the store holds one too.
        expect(await server.judgeServed(stores[0]!, managers)).toEqual({ stored: 'valid', served: ['valid', 'valid'] });
      } finally {
        await Promise.all(managers.map((m) => m.stop()));
        await Promise.all(stores.map((store) => store.close()));
      }
    });
});

describe('T10 Redis Cluster notifications', () => {
  it('T10: on a Cluster, a channel permission revoked at run time is found by the 30 s renewal (the Cluster client resubscribes on another node by itself and swallows the refusal), warned, and the subscription is back once granted again', async () => {
    const acl = (...args: string[]) =>
      Promise.all(cluster.nodes.map((node) => redisCommand(parseAddress(node).port, 'ACL', ...args)));
    await acl(...leastStoreAcl('renewal', 'renewal-password', 'renewal'), '+cluster|slots', '+cluster|info');
    const refusalsLogged = async () => {
      const logs = await acl('LOG');
      return logs.filter((reply) => reply.includes('renewal:events')).length;
    };
    const timers = new FakeClock();
    const log = captureLogger();
    const store = new RedisTokenStore({
      cluster: cluster.nodes,
      username: 'renewal',
      password: new Secret('renewal-password'),
      keyPrefix: 'renewal:',
      codec: new TokenCodec(),
      logger: log.logger,
      readyTimeoutMs: 20_000,
      notificationTimers: timers,
    });
    const other = await openStore('renewal:');
    let notified = 0;
    const heard = (label: string) => saveUntilHeard(other, () => notified, label);
    const logged = (text: string) => log.lines().filter((line) => String(line.msg).includes(text)).length;
    try {
      await store.ready();
      store.subscribe('acct', () => (notified += 1));
      await heard('before');

      await acl('SETUSER', 'renewal', 'resetchannels');
      // Redis drops the subscriber; the Cluster client subscribes on a node again and is refused, silently.
      await waitFor('the Cluster client refused', async () => (await refusalsLogged()) > 0);
      expect(logged('refused to subscribe')).toBe(0);
      await timers.advance(RESUBSCRIBE_EVERY_MS);
      await waitFor('the renewal refused and warned', async () => logged('refused to subscribe') === 1);

      await acl('SETUSER', 'renewal', '&renewal*');
      await timers.advance(1_000);
      await waitFor('the subscription accepted', async () => logged('accepted the subscription') === 1);
      await heard('after');
    } finally {
      await Promise.all([store.close(), other.close()]);
      await acl('DELUSER', 'renewal');
    }
  }, 60_000);
});
