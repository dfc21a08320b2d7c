import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsFingerprint } from '../../src/config/credentials-fingerprint.js';
import type { AccountConfig } from '../../src/config/resolve.js';
import { TokenCodec } from '../../src/stores/codec.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import { RedisTokenStore } from '../../src/stores/redis.js';
import type { TokenStore } from '../../src/stores/types.js';
import type { TokenManager } from '../../src/tokens/token-manager.js';
import { silentLogger } from '../../src/util/logger.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server.js';
import { ScriptedTokenServer } from '../helpers/scripted-token-server.js';
import { SESSION_AUTH, testAccount, testTokenManager } from '../helpers/token-manager-setup.js';

/*
 * H2 across replicas: a stored chain carries the fingerprint of the credentials that made it,
 * and a token manager adopts only its own credentials' chain. Two ScriptedTokenServers stand for
 * the token server as seen by each set of credentials, so every token says whose it is.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const OLD_AUTH = { ...SESSION_AUTH, password: 'old-password' };
const NEW_AUTH = { ...SESSION_AUTH, username: 'rotated-user', password: 'new-password' };

interface Group {
  server: ScriptedTokenServer;
  account: AccountConfig;
}

function world() {
  const clock = new FakeClock();
  const managers: TokenManager[] = [];
  const group = (auth: Record<string, unknown>, lifetimeS = 60): Group => {
    const server = new ScriptedTokenServer(() => clock.now());
    server.lifetime = lifetimeS;
    return { server, account: testAccount(auth) };
  };
  const manager = (of: Group, store: TokenStore, options: { unmarkedRecords?: 'adopt' | 'foreign' } = {}) => {
    const made = testTokenManager({
      clock,
      store,
      account: of.account,
      send: (request, sendOptions) => of.server.send(request, sendOptions),
      random: () => (0.5 + managers.length * 0.3) % 1,
      credentials: () => credentialsFingerprint(of.account.auth),
      ...options,
    });
    managers.push(made);
    return made;
  };
  const settle = () => Promise.all(managers.map((each) => each.settled())).then(() => undefined);
  const advance = (ms: number) => clock.advance(ms, settle);
  const stopAll = () => Promise.all(managers.map((each) => each.stop()));
  return { clock, group, manager, advance, stopAll };
}

/** True when `manager` holds a token that `group`'s server issued. */
function holdsTokenOf(manager: TokenManager, group: Group): boolean {
  const token = manager.current()?.secret.reveal();
  return token !== undefined && group.server.issuedTokens.includes(token);
}

describe('H2 a stored chain belongs to the credentials that made it', () => {
  it("H2, T10: a replica on new credentials never adopts the chain a replica still on the old ones saves after the new one's first read", async () => {
    const { group, manager, advance, stopAll } = world();
    const store = new MemoryTokenStore();
    const [oldCreds, newCreds] = [group(OLD_AUTH), group(NEW_AUTH)];
    const oldReplica = manager(oldCreds, store);
    await oldReplica.start();
    await advance(SECOND);
    const newReplica = manager(newCreds, store);
    await newReplica.start();
    await advance(SECOND);
    expect(holdsTokenOf(newReplica, newCreds)).toBe(true);
    // The old replica renews and saves its chain again, newer than what the new one first read.
    for (let round = 0; round < 5; round++) {
      oldReplica.requestRefresh('admin');
      await advance(10 * SECOND);
      newReplica.requestRefresh('admin');
      await advance(10 * SECOND);
      expect(holdsTokenOf(newReplica, newCreds)).toBe(true);
      expect(holdsTokenOf(oldReplica, oldCreds)).toBe(true);
    }
    await advance(10 * MINUTE);
    expect(holdsTokenOf(newReplica, newCreds)).toBe(true);
    expect(oldCreds.server.reuse + newCreds.server.reuse).toBe(0);
    await stopAll();
  });

  it("H2: a start with new credentials on a store holding the other credentials' record logs in, and its save replaces that record", async () => {
    const { group, manager, advance, stopAll } = world();
    const store = new MemoryTokenStore();
    const [oldCreds, newCreds] = [group(OLD_AUTH), group(NEW_AUTH)];
    const before = manager(oldCreds, store);
    await before.start();
    await advance(SECOND);
    await before.stop();
    const after = manager(newCreds, store);
    await after.start();
    await advance(SECOND);
    expect(newCreds.server.count('login')).toBe(1);
    expect(holdsTokenOf(after, newCreds)).toBe(true);
    const stored = await store.load('acct');
    expect(stored?.state.credentials).toBe(await credentialsFingerprint(newCreds.account.auth));
    expect(stored?.state.accessToken.reveal()).toBe(after.current()?.secret.reveal());
    await stopAll();
  });

  it('H2: a record written by an older version (no fingerprint) is adopted, and the next save marks it', async () => {
    const { group, manager, advance, stopAll, clock } = world();
    const creds = group(OLD_AUTH);
    const store = new MemoryTokenStore();
    const now = clock.now();
    const legacy = {
      accessToken: new Secret('legacy-access'),
      refreshToken: new Secret('legacy-refresh'),
      obtainedAt: now,
      expiresAt: now + 60 * SECOND,
      lifetimeMs: 60 * SECOND,
    };
    await store.save('acct', legacy, null);
    // The codec reads a record without the field, as an older version wrote it.
    const codec = new TokenCodec();
    const { credentials: _none, ...olderFormat } = codec.encode('acct', { state: legacy, revision: 1 });
    expect(codec.decode('acct', olderFormat).state.credentials).toBeUndefined();
    const upgraded = manager(creds, store);
    await upgraded.start();
    expect(upgraded.current()?.secret.reveal()).toBe('legacy-access');
    expect(creds.server.count()).toBe(0);
    // Its next token (the server knows nothing of the legacy chain: a login follows) is saved marked.
    await advance(MINUTE);
    expect(holdsTokenOf(upgraded, creds)).toBe(true);
    expect((await store.load('acct'))?.state.credentials).toBe(await credentialsFingerprint(creds.account.auth));
    await stopAll();
  });

  it('H2: a changed auth (unmarkedRecords foreign) does not adopt a record without a fingerprint', async () => {
    const { group, manager, advance, stopAll, clock } = world();
    const creds = group(NEW_AUTH);
    const store = new MemoryTokenStore();
    const now = clock.now();
    await store.save(
      'acct',
      {
        accessToken: new Secret('legacy-access'),
        refreshToken: new Secret('legacy-refresh'),
        obtainedAt: now,
        expiresAt: now + 60 * SECOND,
        lifetimeMs: 60 * SECOND,
      },
      null,
    );
    const replaced = manager(creds, store, { unmarkedRecords: 'foreign' });
    await replaced.start();
    await advance(SECOND);
    expect(creds.server.count('login')).toBe(1);
    expect(holdsTokenOf(replaced, creds)).toBe(true);
    await stopAll();
  });

  it('T10, H2: a replica whose chain other credentials overwrote in the store logs in rather than send a refresh token a replica with its credentials may have spent', async () => {
    const { group, manager, advance, stopAll } = world();
    const store = new MemoryTokenStore();
    const [oldCreds, newCreds] = [group(OLD_AUTH), group(NEW_AUTH)];
    const [first, second] = [manager(oldCreds, store), manager(oldCreds, store)];
    await first.start();
    await advance(SECOND);
    await second.start();
    await advance(20 * SECOND);
    // The first rotates the chain both hold; the new credentials overwrite that save before the second reads it.
    first.requestRefresh('admin');
    await advance(SECOND);
    expect(oldCreds.server.count('refresh')).toBe(1);
    await manager(newCreds, store).start();
    await advance(SECOND);
    second.requestRefresh('admin');
    await advance(SECOND);
    expect(oldCreds.server.reuse).toBe(0);
    expect(oldCreds.server.count('login')).toBe(2);
    expect(holdsTokenOf(second, oldCreds)).toBe(true);
    await stopAll();
  });

  it('H2: a fingerprint that cannot be computed is logged as its own error, not a store problem: the manager logs in, serves and saves (unmarked), and computes it again at the next save', async () => {
    const { group, clock } = world();
    const creds = group(OLD_AUTH);
    const store = new MemoryTokenStore();
    const log = captureLogger();
    let attempts = 0;
    const failingOnce = () => {
      attempts++;
      return attempts === 1 ? Promise.reject(new Error('scrypt: memory limit exceeded')) : Promise.resolve('cf1:known');
    };
    const made = testTokenManager({
      clock,
      store,
      account: creds.account,
      logger: log.logger,
      send: (request, sendOptions) => creds.server.send(request, sendOptions),
      credentials: failingOnce,
    });
    const advance = (ms: number) => clock.advance(ms, () => made.settled());
    await made.start();
    await advance(SECOND);
    expect(holdsTokenOf(made, creds)).toBe(true);
    expect(made.status().storeProblem).toBeUndefined();
    expect((await store.load('acct'))?.state.accessToken.reveal()).toBe(made.current()?.secret.reveal());
    expect(log.text()).toMatch(/cannot compute the credentials' fingerprint/);
    expect(log.text()).not.toMatch(/memory store: /);
    made.requestRefresh('admin');
    await advance(SECOND);
    expect((await store.load('acct'))?.state.credentials).toBe('cf1:known');
    await made.stop();
  });

  it('H2: the stored fingerprint holds no secret, nor a plain SHA-256 of one; only the secret changed is a new fingerprint', async () => {
    const { group, manager, advance, stopAll } = world();
    const clientSecret = 'client-secret-value-1234';
    const oauth2 = {
      flow: 'oauth2',
      grant: 'password',
      tokenUrl: 'http://token.test/token',
      clientId: 'the-client',
      clientSecret,
      username: 'u',
      password: 'p@ssw0rd-value',
    };
    const records = [];
    // The session dialect through a token manager's own save; oauth2 as the codec writes its fingerprint.
    const creds = group(OLD_AUTH);
    const store = new MemoryTokenStore();
    await manager(creds, store).start();
    await advance(SECOND);
    records.push({ secrets: [OLD_AUTH.password], record: await store.load('acct') });
    const state = (await store.load('acct'))?.state;
    if (state === undefined) throw new Error('nothing stored');
    const credentials = await credentialsFingerprint(testAccount(oauth2).auth);
    records.push({
      secrets: [clientSecret, oauth2.password],
      record: { revision: 1, state: { ...state, credentials } },
    });
    for (const { secrets, record } of records) {
      if (record === undefined) throw new Error('nothing stored');
      const stored = JSON.stringify(new TokenCodec().encode('acct', record));
      expect(JSON.parse(stored)).toHaveProperty('credentials');
      for (const secret of secrets) {
        const digest = createHash('sha256').update(secret).digest();
        for (const spelling of [
          secret,
          digest.toString('hex'),
          digest.toString('base64'),
          digest.toString('base64url'),
        ])
          expect(stored).not.toContain(spelling);
      }
    }
    const rotated = testAccount({ ...OLD_AUTH, password: 'rotated' }).auth;
    const [first, again, other] = await Promise.all([
      credentialsFingerprint(testAccount(OLD_AUTH).auth),
      credentialsFingerprint(testAccount(OLD_AUTH).auth),
      credentialsFingerprint(rotated),
    ]);
    expect(first).toBe(again);
    expect(other).not.toBe(first);
    await stopAll();
  });

  it('H2: credentials whose secrets are all in files are fingerprinted by their settings: the same settings the same, another file or user another', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-fingerprint-'));
    const [a, b] = [join(dir, 'a'), join(dir, 'b')];
    writeFileSync(a, 'same-secret', { mode: 0o600 });
    writeFileSync(b, 'same-secret', { mode: 0o600 });
    const { password: _inline, ...fileAuth } = { ...OLD_AUTH, passwordFile: a };
    const fingerprints = await Promise.all([
      credentialsFingerprint(testAccount(fileAuth).auth),
      credentialsFingerprint(testAccount(fileAuth).auth),
      credentialsFingerprint(testAccount({ ...fileAuth, passwordFile: b }).auth),
      credentialsFingerprint(testAccount({ ...fileAuth, username: 'someone-else' }).auth),
      credentialsFingerprint(testAccount(OLD_AUTH).auth),
    ]);
    expect(fingerprints[0]).toMatch(/^cf1:[A-Za-z0-9_-]{43}$/);
    expect(fingerprints[1]).toBe(fingerprints[0]);
    expect(new Set(fingerprints).size).toBe(4);
    rmSync(dir, { recursive: true });
  });
});

let redis: PrivateRedis;
beforeAll(async () => {
  redis = await startPrivateRedis();
});
afterAll(async () => {
  await redis.close();
});

const HOURS = 6;
const LIFETIME_S = 600;

for (const storeType of ['memory', 'redis'] as const) {
  describe(`T10 two sets of credentials writing one ${storeType} key`, () => {
    it(`T10, H2: over ${HOURS} simulated hours, two groups of replicas with different auth on one ${storeType} store never loop: logins per replica bounded by its renewals, no refresh token sent twice`, async () => {
      const { group, manager, advance, stopAll } = world();
      const shared = new MemoryTokenStore();
      const stores: RedisTokenStore[] = [];
      const storeFor = async (): Promise<TokenStore> => {
        if (storeType === 'memory') return shared;
        const store = new RedisTokenStore({
          url: redis.url,
          keyPrefix: 'two-credentials:',
          codec: new TokenCodec(),
          logger: silentLogger(),
        });
        await store.ready();
        stores.push(store);
        return store;
      };
      const [oldCreds, newCreds] = [group(OLD_AUTH, LIFETIME_S), group(NEW_AUTH, LIFETIME_S)];
      const replicas = [
        manager(oldCreds, await storeFor()),
        manager(oldCreds, await storeFor()),
        manager(newCreds, await storeFor()),
        manager(newCreds, await storeFor()),
      ];
      for (const replica of replicas) {
        await replica.start();
        await advance(SECOND);
      }
      await advance(HOURS * 60 * MINUTE);
      // A renewal is due at `at` (0.8) of the lifetime, at the earliest 0.95 of that with jitter.
      const renewals = Math.ceil((HOURS * 3600) / (0.8 * 0.95 * LIFETIME_S)) + 2;
      const requests = [oldCreds, newCreds].map((each) => each.server.count());
      expect(requests.every((count) => count <= 2 * renewals)).toBe(true);
      expect(oldCreds.server.count('login')).toBeLessThanOrEqual(renewals + 2);
      expect(newCreds.server.count('login')).toBeLessThanOrEqual(renewals + 2);
      expect(oldCreds.server.reuse + newCreds.server.reuse).toBe(0);
      for (const [index, replica] of replicas.entries())
        expect(holdsTokenOf(replica, index < 2 ? oldCreds : newCreds)).toBe(true);
      await stopAll();
      await Promise.all(stores.map((store) => store.close()));
    });
  });
}
