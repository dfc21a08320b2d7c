import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TokenCodec } from '../../src/stores/codec.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import { setAsideIfUnchanged } from '../../src/stores/redis-scripts.js';
import { silentLogger } from '../../src/util/logger.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { waitFor } from '../helpers/ports.js';
import { leastStoreAcl } from '../helpers/redis-acl.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server.js';
import { describeTokenStore, makeTokenState, saveUntilHeard } from './token-store.suite.js';

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

/** A store (not yet ready) that logs in to the test's Redis as `username` (password `<username>-password`). */
function storeAs(username: string, keyPrefix: string, logger = silentLogger()): RedisTokenStore {
  const password = new Secret(`${username}-password`);
  return new RedisTokenStore({ url: redis.url, username, password, keyPrefix, codec: new TokenCodec(), logger });
}

for (const encrypted of [false, true]) {
  describeTokenStore(
    `redis${encrypted ? ' (encrypted)' : ''}`,
    async () => {
      // A fresh key prefix per test: the tests share one server but never each other's keys.
      const keyPrefix = `suite${(prefixes += 1)}:`;
      const codec = encrypted ? new TokenCodec(randomBytes(32)) : new TokenCodec();
      const store = await openStore(keyPrefix, codec);
      return {
        store,
        other: () => openStore(keyPrefix, codec),
        cleanup: () => store.close(),
      };
    },
    { shared: true },
  );
}

/* The same suite as a Redis user with the least the store needs (the ACL docs/behaviour.md gives). */
describe('T10 redis store under the least ACL', () => {
  let admin: Redis;
  beforeAll(async () => {
    admin = new Redis({ path: new URL(redis.url).pathname });
    await admin.call('ACL', ...leastStoreAcl('least', 'least-password', 'least'));
  });
  afterAll(async () => {
    await admin.call('ACL', 'DELUSER', 'least');
    admin.disconnect();
  });
  describeTokenStore(
    'redis (least ACL)',
    async () => {
      const keyPrefix = `least${(prefixes += 1)}:`;
      const open = () => {
        const store = storeAs('least', keyPrefix);
        return store.ready().then(() => store);
      };
      const store = await open();
      return { store, other: open, cleanup: () => store.close() };
    },
    { shared: true },
  );
  it('R7: as that user, a record that cannot be used is still set aside (the scripts may rename and expire it)', async () => {
    const store = storeAs('least', 'least-junk:');
    try {
      await store.ready();
      await admin.set('least-junk:token:acct', 'not a record');
      expect(await store.load('acct')).toBeUndefined();
      expect(await admin.keys('least-junk:token:acct:corrupt:*')).toHaveLength(1);
    } finally {
      await store.close();
    }
  });
});

describe('T10 redis store failures', () => {
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

/**
 * A store logged in as a new user with the least ACL, its keys and channel under `<user>:`
 * (logging to `log`), another store on those keys as the default user, and an admin connection.
 */
async function aclScene(user: string) {
  const admin = new Redis({ path: new URL(redis.url).pathname });
  await admin.call('ACL', ...leastStoreAcl(user, `${user}-password`, user));
  const log = captureLogger();
  const store = storeAs(user, `${user}:`, log.logger);
  const other = await openStore(`${user}:`, new TokenCodec());
  const close = async () => {
    await Promise.all([store.close(), other.close()]);
    await admin.call('ACL', 'DELUSER', user);
    admin.disconnect();
  };
  return { admin, log, store, other, close };
}

describe('T10 redis store notifications', () => {
  it('T10: a save whose announcement Redis refuses (an ACL without the channel) still stands and is reported saved: warned once for the run, and the others read it', async () => {
    const { admin, log, store, other, close } = await aclScene('silent');
    const refusedPublish = () => log.lines().filter((line) => String(line.msg).includes('refused to announce'));
    try {
      await store.ready();
      await admin.call('ACL', 'SETUSER', 'silent', 'resetchannels');
      const first = await store.save('acct', makeTokenState('unannounced-1'));
      const second = await store.save(
        'acct',
        makeTokenState('unannounced-2'),
        first.saved ? first.record.revision : -1,
      );
      expect([first.saved, second.saved]).toEqual([true, true]);
      expect((await other.load('acct'))?.state.accessToken.reveal()).toContain('access-unannounced-2');
      expect(refusedPublish()).toHaveLength(1);
      expect(refusedPublish()[0]).toMatchObject({ level: 40, error: expect.stringContaining("can't publish") });

      // Granted again: the next save is announced, and a later refusal is warned anew.
      await admin.call('ACL', 'SETUSER', 'silent', '&silent*');
      await store.save('acct', makeTokenState('announced'));
      await admin.call('ACL', 'SETUSER', 'silent', 'resetchannels');
      await store.save('acct', makeTokenState('unannounced-3'));
      expect(refusedPublish()).toHaveLength(2);
    } finally {
      await close();
    }
  });

  it('T10: a channel permission revoked at run time (Redis drops the subscriber) is warned, and the subscription is back once granted again: no crash, no restart', async () => {
    const { admin, log, store, other, close } = await aclScene('revoked');
    let notified = 0;
    const heard = (label: string) => saveUntilHeard(other, () => notified, label);
    try {
      await store.ready();
      store.subscribe('acct', () => (notified += 1));
      await heard('before');
      await admin.call('ACL', 'SETUSER', 'revoked', 'resetchannels');
      await waitFor('the refusal warned', async () =>
        log.lines().some((line) => String(line.msg).includes('refused to subscribe')),
      );
      await admin.call('ACL', 'SETUSER', 'revoked', '&revoked*');
      await waitFor('the subscription accepted', async () =>
        log.lines().some((line) => String(line.msg).includes('accepted the subscription')),
      );
      await heard('after');
    } finally {
      await close();
    }
  }, 30_000);

  it('T10: a SUBSCRIBE the server refuses (an ACL without the events channel) is warned once, retried, and heard again once the ACL allows it: no restart, no password in the log', async () => {
    const admin = new Redis({ path: new URL(redis.url).pathname });
    await admin.call('ACL', 'SETUSER', 'no-channels', 'on', '>no-channels-password', '~*', '+@all', 'resetchannels');
    const log = captureLogger();
    const store = storeAs('no-channels', 'acl:', log.logger);
    const other = await openStore('acl:', new TokenCodec());
    const refused = () => log.lines().filter((line) => String(line.msg).includes('refused to subscribe'));
    try {
      await waitFor('the refusal warned', async () => refused().length > 0);
      expect(refused()[0]).toMatchObject({ level: 40, error: expect.stringContaining('NOPERM') });
      // Refused again (Redis's ACL LOG counts each refusal), and still warned once.
      const refusals = async () => {
        const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
        const entry = entries.find((fields) => fields.includes('acl:events'));
        return Number(entry?.[entry.indexOf('count') + 1] ?? 0);
      };
      await waitFor('a second refusal', async () => (await refusals()) >= 2);
      expect(refused()).toHaveLength(1);

      let notified = 0;
      store.subscribe('acct', () => (notified += 1));
      await admin.call('ACL', 'SETUSER', 'no-channels', 'allchannels');
      await waitFor('the subscription accepted', async () =>
        log.lines().some((line) => String(line.msg).includes('accepted the subscription')),
      );
      await store.ready();
      await other.save('acct', makeTokenState('heard'));
      await waitFor('the save heard', async () => notified > 0);
      expect(log.text()).not.toContain('no-channels-password');
    } finally {
      await Promise.all([store.close(), other.close()]);
      await admin.call('ACL', 'DELUSER', 'no-channels');
      admin.disconnect();
    }
  }, 30_000);
});

/*
 * R7: a record the store cannot use (whatever put it there: an operator, another program, a
 * replica with another key) is renamed to `<key>:corrupt:<time>`, reported once by key (never by
 * content), and the account goes on as with no stored state. Every script survives it.
 */
const NOW = Date.parse('2026-01-01T00:00:00Z');
const STAMP = new Date(NOW).toISOString();
const MIB = 1024 * 1024;

/** What a test plants at the token key: a string, raw bytes, or a key of another Redis type. */
type Plant = (client: Redis, key: string) => Promise<unknown>;

interface BadRecord {
  kind: string;
  /** The StoreFormatError-style reason the warning gives; per codec where it depends on the key. */
  reason: string | ((encrypted: boolean) => string);
  plant: (codec: TokenCodec) => Plant;
}

/** A valid record (as the codec writes it), changed by `edit`; its secrets say "leaked". */
function recordJson(
  codec: TokenCodec,
  edit: (record: Record<string, unknown>) => void = () => undefined,
  state = makeTokenState('leaked'),
): string {
  const record = { ...codec.encode('acct', { state, revision: 3 }) } as Record<string, unknown>;
  edit(record);
  return JSON.stringify(record);
}

const setString =
  (value: string | Buffer): Plant =>
  (client, key) =>
    client.set(key, value);

const BAD_RECORDS: BadRecord[] = [
  { kind: 'not JSON (cut short)', reason: 'not_json', plant: (codec) => setString(recordJson(codec).slice(0, 60)) },
  { kind: 'not JSON (empty string)', reason: 'not_json', plant: () => setString('') },
  { kind: 'JSON but an array', reason: 'not_an_object', plant: (codec) => setString(`[${recordJson(codec)}]`) },
  { kind: 'JSON but a string', reason: 'not_an_object', plant: () => setString('"access-leaked-token"') },
  { kind: 'JSON but null', reason: 'not_an_object', plant: () => setString('null') },
  { kind: 'JSON but a number', reason: 'not_an_object', plant: () => setString('42') },
  {
    kind: 'JSON nested too deep for the decoder',
    reason: 'not_json',
    plant: () => setString(`${'['.repeat(5000)}${']'.repeat(5000)}`),
  },
  {
    kind: 'a record without a revision',
    reason: 'missing_field',
    plant: (codec) => setString(recordJson(codec, (r) => delete r.revision)),
  },
  {
    kind: 'a revision that is a string',
    reason: 'missing_field',
    plant: (codec) => setString(recordJson(codec, (r) => (r.revision = '3'))),
  },
  {
    kind: 'a revision of 0',
    reason: 'missing_field',
    plant: (codec) => setString(recordJson(codec, (r) => (r.revision = 0))),
  },
  {
    kind: 'a fractional revision',
    reason: 'missing_field',
    plant: (codec) => setString(recordJson(codec, (r) => (r.revision = 2.5))),
  },
  {
    kind: 'a revision above 2^53',
    reason: 'missing_field',
    plant: (codec) => setString(recordJson(codec, (r) => (r.revision = 1e300))),
  },
  {
    kind: 'a wrong format tag',
    reason: 'foreign_format',
    plant: (codec) => setString(recordJson(codec, (r) => (r.format = 'bearer-sidecar/token-v9'))),
  },
  {
    kind: 'a record without expiresAt',
    reason: 'missing_field',
    plant: (codec) => setString(recordJson(codec, (r) => delete r.expiresAt)),
  },
  {
    kind: 'secrets sealed with another key',
    reason: (encrypted) => (encrypted ? 'wrong_key' : 'encrypted_without_key'),
    plant: () => setString(recordJson(new TokenCodec(randomBytes(32)))),
  },
  {
    kind: 'an access token that is not header-safe (CR LF inside)',
    reason: 'token_not_header_safe',
    plant: (codec) =>
      setString(
        recordJson(
          codec,
          undefined,
          makeTokenState('leaked', { accessToken: new Secret('access-leaked\r\nX-Injected: 1') }),
        ),
      ),
  },
  {
    kind: 'bytes that are not UTF-8 inside the access token',
    // Encrypted, the bytes land before the enc:v1: prefix: a plaintext value where a sealed one belongs.
    reason: (encrypted) => (encrypted ? 'plaintext_with_key' : 'token_not_header_safe'),
    plant: (codec) => {
      const json = recordJson(codec);
      const at = json.indexOf('"accessToken":"') + '"accessToken":"'.length;
      return setString(
        Buffer.concat([Buffer.from(json.slice(0, at)), Buffer.from([0xff, 0xfe]), Buffer.from(json.slice(at))]),
      );
    },
  },
  {
    kind: 'a value over 4 MiB',
    reason: 'too_large',
    plant: (codec) => setString(recordJson(codec, (r) => (r.padding = 'x'.repeat(4 * MIB)))),
  },
  {
    kind: 'a hash at the key',
    reason: 'wrong_type',
    plant: () => (client, key) => client.hset(key, 'accessToken', 'access-leaked-token'),
  },
  {
    kind: 'a list at the key',
    reason: 'wrong_type',
    plant: () => (client, key) => client.rpush(key, 'access-leaked-token'),
  },
  {
    kind: 'a set at the key',
    reason: 'wrong_type',
    plant: () => (client, key) => client.sadd(key, 'access-leaked-token'),
  },
  {
    kind: 'a sorted set at the key',
    reason: 'wrong_type',
    plant: () => (client, key) => client.zadd(key, 1, 'access-leaked-token'),
  },
  {
    kind: 'a stream at the key',
    reason: 'wrong_type',
    plant: () => (client, key) => client.xadd(key, '*', 'accessToken', 'access-leaked-token'),
  },
];

describe('R7: a Redis record that does not decode is set aside', () => {
  let client: Redis;
  beforeAll(() => {
    client = new Redis({ path: new URL(redis.url).pathname });
  });
  afterAll(() => {
    client.disconnect();
  });

  let prefixCount = 0;
  const opened: RedisTokenStore[] = [];
  afterEach(async () => {
    while (opened.length > 0) await opened.pop()?.close();
  });

  async function openCapturing(
    keyPrefix: string,
    codec: TokenCodec,
  ): Promise<{ store: RedisTokenStore; capture: ReturnType<typeof captureLogger> }> {
    const capture = captureLogger();
    const store = new RedisTokenStore({ url: redis.url, keyPrefix, codec, logger: capture.logger, now: () => NOW });
    opened.push(store);
    await store.ready();
    return { store, capture };
  }

  /** A clean key prefix per test: the set-aside keys of one test never meet another's. */
  function freshPrefix(): string {
    return `r7-${(prefixCount += 1)}:`;
  }

  /** Everything the planted value was, so the set-aside copy can be compared with it. */
  async function snapshot(key: string): Promise<{ type: string; sha1: string | null; length: number }> {
    const type = await client.type(key);
    if (type !== 'string') return { type, sha1: null, length: 0 };
    const bytes = (await client.getBuffer(key)) ?? Buffer.alloc(0);
    // A digest: comparing two 4 MiB buffers element by element takes the matcher tens of seconds.
    return { type, sha1: createHash('sha1').update(bytes).digest('hex'), length: bytes.length };
  }

  const warningsOf = (capture: ReturnType<typeof captureLogger>) => capture.lines().filter((line) => line.level === 40);

  for (const encrypted of [false, true]) {
    const variant = encrypted ? 'encrypted' : 'plaintext';
    const makeCodec = (): TokenCodec => (encrypted ? new TokenCodec(randomBytes(32)) : new TokenCodec());

    for (const bad of BAD_RECORDS) {
      const reason = typeof bad.reason === 'string' ? bad.reason : bad.reason(encrypted);

      it(`R7 (${variant}): ${bad.kind}: load sets it aside as <key>:corrupt:<time>, unchanged, warns once naming the key (never the content), and answers "nothing stored"`, async () => {
        const prefix = freshPrefix();
        const codec = makeCodec();
        const { store, capture } = await openCapturing(prefix, codec);
        const key = `${prefix}token:acct`;
        await bad.plant(codec)(client, key);
        const planted = await snapshot(key);

        await expect(store.load('acct')).resolves.toBeUndefined();

        const aside = `${key}:corrupt:${STAMP}`;
        expect(await client.exists(key)).toBe(0);
        expect(await client.keys(`${prefix}*`)).toEqual([aside]);
        expect(await snapshot(aside)).toEqual(planted);
        const warnings = warningsOf(capture);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toMatchObject({ account: 'acct', key, setAsideAs: aside, reason });
        expect(capture.text()).not.toContain('leaked');
        // Nothing stored now: load says so again, with no second warning.
        await expect(store.load('acct')).resolves.toBeUndefined();
        expect(warningsOf(capture)).toHaveLength(1);
      });

      it(`R7 (${variant}): ${bad.kind}: every kind of save goes through it: a stale revision finds nothing stored, expectedRevision null and unconditional saves succeed`, async () => {
        const prefix = freshPrefix();
        const codec = makeCodec();
        const { store, capture } = await openCapturing(prefix, codec);
        const key = `${prefix}token:acct`;
        const plant = bad.plant(codec);

        // As the token manager does after a refresh: compare-and-set against the revision it held...
        await plant(client, key);
        expect(await store.save('acct', makeTokenState('held'), 3)).toEqual({ saved: false, current: undefined });
        // ... and, finding nothing stored, write afresh above that revision.
        const rewritten = await store.save('acct', makeTokenState('rewritten'), null, 3);
        expect(rewritten.saved).toBe(true);
        expect((await store.load('acct'))?.revision).toBe(4);

        // A creation straight onto a bad record succeeds in one call.
        await client.del(key);
        await plant(client, key);
        const created = makeTokenState('created');
        const result = await store.save('acct', created, null);
        expect(result.saved).toBe(true);
        expect((await store.load('acct'))?.state.accessToken.reveal()).toBe(created.accessToken.reveal());

        // So does an unconditional save.
        await client.del(key);
        await plant(client, key);
        expect((await store.save('acct', makeTokenState('unconditional'))).saved).toBe(true);
        expect((await store.load('acct'))?.revision).toBe(1);

        expect((await client.keys(`${key}:corrupt:*`)).sort()).toEqual([
          `${key}:corrupt:${STAMP}`,
          `${key}:corrupt:${STAMP}-1`,
          `${key}:corrupt:${STAMP}-2`,
        ]);
        expect(warningsOf(capture).map((line) => line.reason)).toEqual([reason, reason, reason]);
        expect(capture.text()).not.toContain('leaked');
      });
    }
  }

  it('R7: after a set-aside, a save reaches a second replica: it is notified and loads the new state', async () => {
    const prefix = freshPrefix();
    const codec = new TokenCodec();
    const { store } = await openCapturing(prefix, codec);
    const { store: other } = await openCapturing(prefix, codec);
    const key = `${prefix}token:acct`;
    await store.save('acct', makeTokenState('before'));
    await client.set(key, 'not json at all');

    await expect(other.load('acct')).resolves.toBeUndefined();
    const onChange = vi.fn();
    const unsubscribe = other.subscribe('acct', onChange);
    try {
      const state = makeTokenState('after');
      expect((await store.save('acct', state, 1)).saved).toBe(false);
      expect((await store.save('acct', state, null, 1)).saved).toBe(true);
      await vi.waitFor(() => expect(onChange).toHaveBeenCalled(), { timeout: 5000, interval: 20 });
      const adopted = await other.load('acct');
      expect(adopted?.revision).toBe(2);
      expect(adopted?.state.accessToken.reveal()).toBe(state.accessToken.reveal());
    } finally {
      unsubscribe();
    }
  });

  it('R7: a compare-and-set overwrites only the record the writer knew: another record planted at the same revision is returned, not replaced', async () => {
    const prefix = freshPrefix();
    const codec = new TokenCodec();
    const { store } = await openCapturing(prefix, codec);
    const key = `${prefix}token:acct`;
    await store.save('acct', makeTokenState('known'));
    const planted = makeTokenState('planted');
    await client.set(key, JSON.stringify(codec.encode('acct', { state: planted, revision: 1 })));

    const result = await store.save('acct', makeTokenState('mine'), 1);
    expect(result.saved).toBe(false);
    if (!result.saved) expect(result.current?.state.accessToken.reveal()).toBe(planted.accessToken.reveal());
    expect((await store.load('acct'))?.state.accessToken.reveal()).toBe(planted.accessToken.reveal());
    // Having read it, the writer may now replace it.
    expect((await store.save('acct', makeTokenState('mine'), 1)).saved).toBe(true);
  });

  it('R7: set-aside is conditional: a bad record replaced by another value before it is set aside is left alone', async () => {
    const key = `${freshPrefix()}token:acct`;
    await client.set(key, 'found bad');
    const digest = createHash('sha1').update('found bad').digest('hex');
    await client.set(key, 'written since');
    expect(await setAsideIfUnchanged(client, key, digest, STAMP)).toBeUndefined();
    expect(await client.get(key)).toBe('written since');
    await client.set(key, 'found bad');
    expect(await setAsideIfUnchanged(client, key, digest, STAMP)).toBe(`${key}:corrupt:${STAMP}`);
    expect(await client.exists(key)).toBe(0);
  });

  it('R7: a lock key of another Redis type is set aside (warned) and the lock can be taken, extended and released', async () => {
    const prefix = freshPrefix();
    const { store, capture } = await openCapturing(prefix, new TokenCodec());
    const key = `${prefix}lock:acct`;
    await client.hset(key, 'holder', 'someone');
    const lock = await store.obtainLock('acct', 10_000);
    expect(lock).toBeDefined();
    expect(await client.type(`${key}:corrupt:${STAMP}`)).toBe('hash');
    expect(warningsOf(capture)).toMatchObject([{ key, setAsideAs: `${key}:corrupt:${STAMP}`, reason: 'wrong_type' }]);
    expect(await lock?.extend(10_000)).toBe(true);
    await lock?.release();
    expect(await client.exists(key)).toBe(0);
  });

  it('R7: a lock key holding a value with no expiry (it would never be released) is set aside and the lock can be taken', async () => {
    const prefix = freshPrefix();
    const { store, capture } = await openCapturing(prefix, new TokenCodec());
    const key = `${prefix}lock:acct`;
    await client.set(key, 'junk that never expires');
    const lock = await store.obtainLock('acct', 10_000);
    expect(lock).toBeDefined();
    expect(await client.get(`${key}:corrupt:${STAMP}`)).toBe('junk that never expires');
    expect(warningsOf(capture)).toMatchObject([{ key, reason: 'no_expiry' }]);
    await lock?.release();
  });

  it('R7: a lock key with an expiry is a lock held by someone else, whatever it holds, until it expires', async () => {
    const prefix = freshPrefix();
    const { store, capture } = await openCapturing(prefix, new TokenCodec());
    await client.set(`${prefix}lock:acct`, 'junk', 'PX', 60_000);
    expect(await store.obtainLock('acct', 10_000)).toBeUndefined();
    expect(warningsOf(capture)).toHaveLength(0);
  });

  it('R7: extend and release of a held lock whose key was replaced by junk do not fail: extend says false, release leaves the junk', async () => {
    const prefix = freshPrefix();
    const { store } = await openCapturing(prefix, new TokenCodec());
    const key = `${prefix}lock:acct`;
    for (const replace of [
      () => client.hset(key, 'x', '1'),
      () => client.rpush(key, 'x'),
      () => client.set(key, 'junk'),
    ]) {
      const lock = await store.obtainLock('acct', 10_000);
      expect(lock).toBeDefined();
      await client.del(key);
      await replace();
      await expect(lock?.extend(10_000)).resolves.toBe(false);
      await expect(lock?.release()).resolves.toBeUndefined();
      expect(await client.exists(key)).toBe(1);
      await client.del(key);
    }
  });
});
