import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenCodec } from '../../src/stores/codec.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import { silentLogger } from '../../src/util/logger.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server.js';
import { describeTokenStore, makeTokenState } from './token-store.suite.js';

/** The same conformance suite as memory and file, against a real redis-server of our own. */
let redis: PrivateRedis;
beforeAll(async () => {
  redis = await startPrivateRedis();
});
afterAll(async () => {
  await redis.close();
});

let prefixes = 0;
function openStore(keyPrefix: string, codec: TokenCodec): Promise<RedisTokenStore> {
  const store = new RedisTokenStore({ url: redis.url, keyPrefix, codec, logger: silentLogger() });
  return store.ready().then(() => store);
}

for (const encrypted of [false, true]) {
  describeTokenStore(`redis${encrypted ? ' (encrypted)' : ''}`, async () => {
    // A fresh key prefix per test: the tests share one server but never each other's keys.
    const keyPrefix = `suite${(prefixes += 1)}:`;
    const codec = encrypted ? new TokenCodec(randomBytes(32)) : new TokenCodec();
    const store = await openStore(keyPrefix, codec);
    return {
      store,
      other: () => openStore(keyPrefix, codec),
      cleanup: () => store.close(),
    };
  }, { shared: true });
}

describe('redis store failures', () => {
  it('T10: with Redis down, operations fail fast with StoreUnavailableError naming host or socket, never a secret', async () => {
    const store = await openStore('down:', new TokenCodec());
    await store.save('acct', makeTokenState('down'));
    await redis.stop();
    try {
      await expect(store.load('acct')).rejects.toThrow(/redis at .*redis\.sock/);
      await expect(store.obtainLock('acct', 1000)).rejects.toMatchObject({ name: 'StoreUnavailableError' });
    } finally {
      await redis.start();
      await store.close();
    }
  });
});
