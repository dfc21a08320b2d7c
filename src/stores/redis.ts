import { createHash, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { StoreFormatError, type TokenCodec } from './codec.js';
import {
  compareAndSet,
  extendLock,
  obtainLock,
  readRecord,
  releaseLock,
  setAsideIfUnchanged,
  type Inspection,
  type RedisClient,
} from './redis-scripts.js';
import { connectRedis, describeRedisTarget, reconnectWhenEnded, type RedisTarget } from './redis-connect.js';
import { RedisNotifications } from './redis-notifications.js';
import {
  nextRevision,
  type SaveResult,
  type StoredToken,
  type StoreLock,
  type TokenState,
  type TokenStore,
} from './types.js';
import { SidecarError, messageOf } from '../util/errors.js';

/*
 * The shared store for replicas (T10). Key layout, under `keyPrefix` (default "bearer-sidecar:"):
 *   <prefix>token:<account>   the account's state, JSON (format bearer-sidecar/token-v1, with a revision)
 *   <prefix>lock:<account>    the refresh lock: "<host>:<pid>:<uuid>" with a PX expiry
 *   <prefix>events            pub/sub channel: the account name, published after every save
 *   <key>:corrupt:<time>      a token or lock key that could not be used, set aside (R7), kept 7 days
 * In a Redis Cluster (H1) the account is a hash tag, `token:{<account>}` and `lock:{<account>}`, so
 * an account's keys and their set-aside copies share one slot (a script may only touch one slot);
 * the events channel is no key (PUBLISH reaches every node).
 * Reads, compare-and-set, lock extension and release are Lua scripts (redis-scripts.ts), so each is
 * one atomic step, and none fails on a bad record.
 */

/** Every store command's deadline (ms): a frozen server must not hang a token request. */
const COMMAND_TIMEOUT_MS = 2_000;
/** WAIT ends this long (ms) before the command deadline, so its own answer arrives in time. */
const WAIT_MARGIN_MS = 500;

/** How often one operation re-reads a record that changed while it was being set aside. */
const MAX_ATTEMPTS = 10;

const RECORD_SET_ASIDE = 'redis record cannot be used: set aside, the account goes on as with no stored state';
const LOCK_SET_ASIDE = 'redis lock key held something that is not a lock: set aside';
const ANNOUNCE_REFUSED =
  "redis refused to announce a save on the store's events channel: the save stands, other replicas read it later (check the ACL's channel permissions)";

/** A record found bad was replaced before it could be set aside: read it again. */
const CHANGED = Symbol('changed while being set aside');

export interface RedisStoreOptions extends RedisTarget {
  keyPrefix: string;
  codec: TokenCodec;
  logger: Logger;
  /** The time in set-aside key names (ms since the epoch); Date.now by default. */
  now?: () => number;
  /** How long `ready()` waits for the first connection and the answer to the subscription, in ms (default 3000). */
  readyTimeoutMs?: number;
  /** Timers of the subscription's retries and renewals (see RedisNotifications); the system clock by default. */
  notificationTimers?: Pick<Clock, 'setTimer' | 'clearTimer'>;
}

/** Thrown when Redis cannot be reached: the token manager keeps serving and retries (T10). */
export class StoreUnavailableError extends SidecarError {
  constructor(message: string) {
    super('BS_ERR_STORE_UNAVAILABLE', message);
  }
}

export class RedisTokenStore implements TokenStore {
  readonly type = 'redis';
  readonly shared = true;
  readonly #redis: RedisClient;
  readonly #notifications: RedisNotifications;
  /** Whether the last save's announcement was refused: a run of refusals is warned once. */
  #announceRefused = false;
  /** Stops connecting the command client again (see reconnectWhenEnded); called by close(). */
  readonly #stopReviving: () => void;
  readonly #o: RedisStoreOptions;
  /**
   * The last record read or written per account, with the SHA-1 of its bytes: an unchanged value
   * is not decrypted and parsed again, and a compare-and-set insists on that very record (R7).
   */
  readonly #seen = new LRUCache<string, { digest: string; record: StoredToken }>({ max: 1000 });
  readonly #owner = `${hostname()}:${process.pid}`;
  /** H1, per master (`host:port`): whether a replica was connected at the last look, or has gone since. */
  readonly #replicaSeen = new Map<string, 'connected' | 'gone' | undefined>();

  constructor(options: RedisStoreOptions) {
    this.#o = options;
    const connection: RedisOptions = {
      // Fail fast while Redis is down instead of queueing: the caller decides what to do.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      // A frozen server must not hang a token request: every command has a deadline.
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (attempt: number) => Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)),
      lazyConnect: false,
    };
    this.#redis = connectRedis(options, connection);
    // The subscriber only listens; it may queue its SUBSCRIBE until the server is back.
    // ioredis's own resubscription is off: it leaves a refusal unhandled (a crash); ours handles it.
    this.#notifications = new RedisNotifications({
      client: connectRedis(options, {
        ...connection,
        enableOfflineQueue: true,
        commandTimeout: undefined,
        autoResubscribe: false,
      }),
      channel: this.#key('events'),
      logger: options.logger,
      where: () => this.#where(),
      ...(options.notificationTimers && { clock: options.notificationTimers }),
    });
    // A client that ends without our asking is connected again (see reconnectWhenEnded).
    this.#stopReviving = reconnectWhenEnded(this.#redis, 'commands', options.logger, () => this.#where());
    // Connection errors are reported where an operation fails; here they would only be noise.
    this.#redis.on('error', () => undefined);
  }

  /**
   * Resolves once commands can be sent and Redis has answered the subscription to the events
   * channel, accepting or refusing it (a refusal is logged and retried, see RedisNotifications);
   * rejects with StoreUnavailableError after `readyTimeoutMs` (3 s).
   */
  async ready(): Promise<void> {
    const connected =
      this.#redis.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve) => this.#redis.once('ready', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new StoreUnavailableError(`redis at ${this.#where()} did not answer`)),
        this.#o.readyTimeoutMs ?? 3_000,
      );
    });
    try {
      await Promise.race([Promise.all([connected, this.#notifications.answered]), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The account's record, or undefined when nothing usable is stored. R7: a record that cannot be
   * used is set aside (one warning naming its key) and reads as nothing stored. Rejects with
   * StoreUnavailableError when Redis cannot be reached, or when the record kept changing while it
   * was being set aside (MAX_ATTEMPTS times).
   */
  async load(account: string): Promise<StoredToken | undefined> {
    const key = this.#accountKey('token', account);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const found = await this.#call(() => readRecord(this.#redis, key, this.#stamp()));
      const current = await this.#accept(account, key, found);
      if (current !== CHANGED) return current;
    }
    throw new StoreUnavailableError(
      `redis at ${this.#where()}: the record of ${account} kept changing while it was set aside`,
    );
  }

  async save(
    account: string,
    state: TokenState,
    expectedRevision?: number | null,
    lastKnownRevision = 0,
  ): Promise<SaveResult> {
    if (expectedRevision !== undefined) return this.#compareAndSet(account, state, expectedRevision, lastKnownRevision);
    // Unconditional: compare-and-set against what is there now, so revisions only ever grow.
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const result = await this.#compareAndSet(
        account,
        state,
        (await this.load(account))?.revision ?? null,
        lastKnownRevision,
      );
      if (result.saved) return result;
    }
    throw new StoreUnavailableError(`redis at ${this.#where()}: too many concurrent writers for ${account}`);
  }

  async #compareAndSet(
    account: string,
    state: TokenState,
    expectedRevision: number | null,
    lastKnownRevision: number,
  ): Promise<SaveResult> {
    const key = this.#accountKey('token', account);
    const record: StoredToken = { state, revision: nextRevision(expectedRevision, lastKnownRevision) };
    const value = JSON.stringify(this.#o.codec.encode(account, record));
    const seen = this.#seen.get(account);
    let expectedDigest =
      expectedRevision !== null && seen?.record.revision === expectedRevision ? seen.digest : undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const request = {
        key,
        channel: this.#key('events'),
        account,
        expectedRevision,
        expectedDigest,
        value,
        stamp: this.#stamp(),
      };
      const { saved, found, announceRefused } = await this.#call(() => compareAndSet(this.#redis, request));
      if (saved) {
        if (found.kind === 'set-aside') this.#warnSetAside(account, key, found);
        this.#noteAnnouncement(announceRefused);
        this.#seen.set(account, { digest: sha1(value), record: copyRecord(record) });
        return { saved: true, record };
      }
      const current = await this.#accept(account, key, found);
      if (current === CHANGED) continue;
      // A bad record was set aside: nothing is stored now, which is what a creation expects.
      if (current === undefined && found.kind !== 'absent' && expectedRevision === null) continue;
      // The expected revision, not seen by this instance before: now the codec has vouched for it.
      // (One seen before but now different is another record: refused, returned as current.)
      if (expectedDigest === undefined && found.kind === 'value' && current?.revision === expectedRevision) {
        expectedDigest = found.digest;
        continue;
      }
      return { saved: false, current };
    }
    throw new StoreUnavailableError(`redis at ${this.#where()}: too many concurrent writers for ${account}`);
  }

  /**
   * H1: waits until one replica holds every write this process made to `account`'s keys (Redis
   * `WAIT 1`), for at most `timeoutMs` ms and never past 1.5 s (the command deadline is 2 s: a
   * longer WAIT would be cut by the client while Redis kept the connection blocked). Resolves true when a replica acknowledged, or at once
   * when the master has no replica connected (nothing to wait for); false when the wait timed out.
   * While it waits, other commands on the same connection queue behind it (WAIT blocks its
   * connection, and must run on the connection that wrote). Rejects with StoreUnavailableError.
   */
  async replicate(account: string, timeoutMs: number): Promise<boolean> {
    return this.#call(async () => {
      const node = await this.#nodeHolding(this.#accountKey('token', account));
      if (!this.#hasReplica(node, connectedReplicas(await node.info('replication')))) return true;
      // Below the command deadline: WAIT must answer (0) before ioredis gives up on the connection.
      const waitMs = Math.max(1, Math.min(Math.round(timeoutMs), COMMAND_TIMEOUT_MS - WAIT_MARGIN_MS));
      return (await node.wait(1, waitMs)) >= 1;
    });
  }

  /**
   * H1: whether `node` (a master) has a replica to wait for. A master that had one and now reports
   * none is said once, as a warning (nothing is replicated until a replica reconnects, so a
   * failover meanwhile could bring back a spent refresh token), and once more when one is back.
   */
  #hasReplica(node: Redis, replicas: number): boolean {
    const where = `${node.options.host ?? ''}:${node.options.port ?? ''}`;
    const before = this.#replicaSeen.get(where);
    this.#replicaSeen.set(where, replicas > 0 ? 'connected' : before === undefined ? undefined : 'gone');
    if (replicas > 0 && before === 'gone') this.#o.logger.info({ redis: where }, REPLICA_BACK);
    if (replicas === 0 && before === 'connected') this.#o.logger.warn({ redis: where }, REPLICA_GONE);
    return replicas > 0;
  }

  /** The connection that writes `key`: the one client, or in a Cluster the master serving its slot. */
  async #nodeHolding(key: string): Promise<Redis> {
    const client = this.#redis;
    if (!('nodes' in client) || typeof client.nodes !== 'function') return client as Redis;
    const cluster = client as Cluster;
    const slot = keySlot(key);
    const address = cluster.slots[slot]?.[0];
    const node = cluster.nodes('master').find((each) => `${each.options.host}:${each.options.port}` === address);
    if (node === undefined) throw new StoreUnavailableError(`no known master serves the slot of ${key}`);
    return node;
  }

  /**
   * T10: the account's lock for `ttlMs` ms, or undefined while another holder has it. R7: a lock key
   * that is not a lock (another type, or no expiry) is set aside (one warning) and the lock taken;
   * extend and release never fail on junk (extend answers false). Rejects with StoreUnavailableError.
   */
  async obtainLock(account: string, ttlMs: number): Promise<StoreLock | undefined> {
    const key = this.#accountKey('lock', account);
    const holder = `${this.#owner}:${randomUUID()}`;
    const { taken, setAside } = await this.#call(() => obtainLock(this.#redis, key, holder, ttlMs, this.#stamp()));
    if (setAside !== undefined) this.#o.logger.warn({ account, key, ...setAside }, LOCK_SET_ASIDE);
    if (!taken) return undefined;
    return {
      extend: (extendMs) => this.#call(() => extendLock(this.#redis, key, holder, extendMs)),
      release: () => this.#call(() => releaseLock(this.#redis, key, holder)),
    };
  }

  subscribe(account: string, onChange: () => void): () => void {
    return this.#notifications.listen(account, onChange);
  }

  async close(): Promise<void> {
    this.#notifications.close();
    this.#stopReviving();
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  /** Warns once per run of saves whose announcement Redis refused (see compareAndSet). */
  #noteAnnouncement(refused: string | undefined): void {
    if (refused !== undefined && !this.#announceRefused)
      this.#o.logger.warn({ redis: this.#where(), error: refused }, ANNOUNCE_REFUSED);
    this.#announceRefused = refused !== undefined;
  }

  /**
   * What a script found, as a record. A value the codec refuses is set aside here, if it is still
   * the value found bad (R7); CHANGED when it was replaced meanwhile.
   */
  async #accept(account: string, key: string, found: Inspection): Promise<StoredToken | undefined | typeof CHANGED> {
    if (found.kind === 'absent') return undefined;
    if (found.kind === 'set-aside') {
      this.#warnSetAside(account, key, found);
      return undefined;
    }
    try {
      return this.#decode(account, found.raw, found.digest);
    } catch (error) {
      if (!(error instanceof StoreFormatError)) throw error;
      const setAsideAs = await this.#call(() => setAsideIfUnchanged(this.#redis, key, found.digest, this.#stamp()));
      if (setAsideAs === undefined) return CHANGED;
      this.#warnSetAside(account, key, { reason: error.reason, setAsideAs, problem: error.message });
      return undefined;
    }
  }

  /** Names the key and why, never the content: a bad record may still hold a token. */
  #warnSetAside(account: string, key: string, details: { reason: string; setAsideAs: string; problem?: string }): void {
    this.#o.logger.warn({ account, key, ...details }, RECORD_SET_ASIDE);
  }

  #decode(account: string, raw: string, digest: string): StoredToken {
    const seen = this.#seen.get(account);
    if (seen?.digest === digest) return copyRecord(seen.record);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      // V8's message would quote the stored value, which may hold a token.
      throw new StoreFormatError('not_json', `stored token of ${account} is not JSON`);
    }
    const record = this.#o.codec.decode(account, value);
    this.#seen.set(account, { digest, record });
    return copyRecord(record);
  }

  /** The time in a set-aside key's name (ISO 8601). */
  #stamp(): string {
    return new Date((this.#o.now ?? Date.now)()).toISOString();
  }

  async #call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw new StoreUnavailableError(`redis at ${this.#where()}: ${messageOf(error)}`);
    }
  }

  #key(suffix: string): string {
    return `${this.#o.keyPrefix}${suffix}`;
  }

  /** `token:<account>`, or `token:{<account>}` in a Cluster: one hash slot per account (H1). */
  #accountKey(kind: 'token' | 'lock', account: string): string {
    return this.#key(this.#o.cluster === undefined ? `${kind}:${account}` : `${kind}:{${account}}`);
  }

  /** Hosts and ports (or socket path) only: a redis URL may carry a password. */
  #where(): string {
    return describeRedisTarget(this.#o);
  }
}

/** Callers may change the state they get; the remembered record must not change with it. */
function copyRecord(record: StoredToken): StoredToken {
  return { state: { ...record.state }, revision: record.revision };
}

/** As Redis's redis.sha1hex computes it over the bytes ioredis sends (UTF-8). */
function sha1(value: string): string {
  return createHash('sha1').update(value, 'utf8').digest('hex');
}

/** A key's Cluster hash slot (CRC16 of its hash tag, mod 16384), computed as ioredis computes it: no round trip. */
const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

const REPLICA_GONE =
  'redis master reports no replica connected although one was before: new refresh tokens are not replicated until it reconnects, and a failover now could bring back a spent one; check the replica';
const REPLICA_BACK = 'redis master has a replica connected again: new refresh tokens are replicated again';

/** `connected_slaves:N` of an `INFO replication` answer (0 when absent). */
function connectedReplicas(info: string): number {
  const match = /^connected_slaves:(\d+)/m.exec(info);
  return match ? Number(match[1]) : 0;
}
