import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { Redis, RedisOptions } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../util/logger.js';
import { StoreFormatError, type TokenCodec } from './codec.js';
import { nextRevision, type SaveResult, type StoredToken, type StoreLock, type TokenState, type TokenStore } from './types.js';

/*
 * The shared store for replicas (T10). Key layout, under `keyPrefix` (default "bearer-sidecar:"):
 *   <prefix>token:<account>   the account's state, JSON (format bearer-sidecar/token-v1, with a revision)
 *   <prefix>lock:<account>    the refresh lock: "<host>:<pid>:<uuid>" with a PX expiry
 *   <prefix>events            pub/sub channel: the account name, published after every save
 * Compare-and-set, lock extension and release are Lua scripts, so each is one atomic step.
 */

/** Saves only if the stored revision is the expected one ("" = nothing stored yet). */
const CAS_SAVE = `
local current = redis.call('GET', KEYS[1])
local revision = ''
if current then revision = tostring(cjson.decode(current).revision) end
if revision ~= ARGV[1] then return current or false end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 'OK'
`;

/** Extends or releases a lock only for the holder that owns it. */
const EXTEND_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  codec: TokenCodec;
  logger: Logger;
}

/** Thrown when Redis cannot be reached: the token manager keeps serving and retries (T10). */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

export class RedisTokenStore implements TokenStore {
  readonly type = 'redis';
  readonly shared = true;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #o: RedisStoreOptions;
  readonly #listeners = new Map<string, Set<() => void>>();
  /** The last decoded record per account, so an unchanged value is not decrypted and parsed again. */
  readonly #decoded = new LRUCache<string, { raw: string; record: StoredToken }>({ max: 1000 });
  readonly #owner = `${hostname()}:${process.pid}`;

  constructor(options: RedisStoreOptions) {
    this.#o = options;
    const connection: RedisOptions = {
      // Fail fast while Redis is down instead of queueing: the caller decides what to do.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      // A frozen server must not hang a token request: every command has a deadline.
      commandTimeout: 2_000,
      retryStrategy: (attempt: number) => Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)),
      lazyConnect: false,
    };
    this.#redis = connect(options.url, connection);
    // The subscriber only listens; it may queue its SUBSCRIBE until the server is back.
    this.#subscriber = connect(options.url, { ...connection, enableOfflineQueue: true, commandTimeout: undefined });
    // Connection errors are reported where an operation fails; here they would only be noise.
    this.#redis.on('error', () => undefined);
    this.#subscriber.on('error', () => undefined);
    this.#subscriber.on('message', (_channel: string, account: string) => {
      for (const listener of this.#listeners.get(account) ?? []) listener();
    });
    // (Re)subscribe on every (re)connection; the first subscription is part of ready().
    this.#subscribed = new Promise((resolve) => {
      this.#subscriber.on('ready', () => {
        this.#subscriber.subscribe(this.#key('events')).then(
          () => resolve(),
          () => undefined,
        );
      });
    });
  }

  readonly #subscribed: Promise<void>;

  /** Resolves once commands can be sent and notifications will arrive (rejects after 3 s). */
  async ready(): Promise<void> {
    const connected =
      this.#redis.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => this.#redis.once('ready', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new StoreUnavailableError(`redis at ${this.#where()} did not answer`)), 3_000);
    });
    try {
      await Promise.race([Promise.all([connected, this.#subscribed]), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async load(account: string): Promise<StoredToken | undefined> {
    const raw = await this.#call(() => this.#redis.get(this.#key(`token:${account}`)));
    return raw === null ? undefined : this.#decode(account, raw);
  }

  async save(account: string, state: TokenState, expectedRevision?: number | null, lastKnownRevision = 0): Promise<SaveResult> {
    if (expectedRevision !== undefined) return this.#compareAndSet(account, state, expectedRevision, lastKnownRevision);
    // Unconditional: compare-and-set against what is there now, so revisions only ever grow.
    for (let attempt = 0; attempt < 10; attempt++) {
      const result = await this.#compareAndSet(account, state, (await this.load(account))?.revision ?? null, lastKnownRevision);
      if (result.saved) return result;
    }
    throw new StoreUnavailableError(`redis at ${this.#where()}: too many concurrent writers for ${account}`);
  }

  async #compareAndSet(account: string, state: TokenState, expectedRevision: number | null, lastKnownRevision: number): Promise<SaveResult> {
    const record: StoredToken = { state, revision: nextRevision(expectedRevision, lastKnownRevision) };
    const encoded = JSON.stringify(this.#o.codec.encode(account, record));
    const expected = expectedRevision === null ? '' : String(expectedRevision);
    const answer = await this.#call(() => this.#redis.eval(CAS_SAVE, 2, this.#key(`token:${account}`), this.#key('events'), expected, encoded, account));
    if (answer === 'OK') return { saved: true, record };
    return { saved: false, current: typeof answer === 'string' ? this.#decode(account, answer) : undefined };
  }

  async obtainLock(account: string, ttlMs: number): Promise<StoreLock | undefined> {
    const key = this.#key(`lock:${account}`);
    const holder = `${this.#owner}:${randomUUID()}`;
    const taken = await this.#call(() => this.#redis.set(key, holder, 'PX', Math.ceil(ttlMs), 'NX'));
    if (taken !== 'OK') return undefined;
    return {
      extend: async (extendMs) => (await this.#call(() => this.#redis.eval(EXTEND_LOCK, 1, key, holder, String(Math.ceil(extendMs))))) === 1,
      release: async () => {
        await this.#call(() => this.#redis.eval(RELEASE_LOCK, 1, key, holder));
      },
    };
  }

  subscribe(account: string, onChange: () => void): () => void {
    let listeners = this.#listeners.get(account);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(account, listeners);
    }
    listeners.add(onChange);
    return () => listeners.delete(onChange);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    this.#subscriber.disconnect();
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  #decode(account: string, raw: string): StoredToken {
    const cached = this.#decoded.get(account);
    if (cached?.raw === raw) return { state: { ...cached.record.state }, revision: cached.record.revision };
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      // V8's message would quote the stored value, which may hold a token.
      throw new StoreFormatError('not_json', `stored token of ${account} is not JSON`);
    }
    const record = this.#o.codec.decode(account, value);
    this.#decoded.set(account, { raw, record });
    return { state: { ...record.state }, revision: record.revision };
  }

  async #call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw new StoreUnavailableError(`redis at ${this.#where()}: ${(error as Error).message}`);
    }
  }

  #key(suffix: string): string {
    return `${this.#o.keyPrefix}${suffix}`;
  }

  /** Host and port (or socket path) only: a redis URL may carry a password. */
  #where(): string {
    return describeRedisUrl(this.#o.url);
  }
}

/**
 * ioredis is loaded only when a Redis store is configured: loaded and unused it would add about
 * 10 MiB to every sidecar's resident memory (measured in the README's Performance section).
 */
const loadRedis = (): typeof Redis => (createRequire(import.meta.url)('ioredis') as typeof import('ioredis')).Redis;

/** `redis://`, `rediss://` (TLS) or `unix:///path/to/redis.sock`. */
function connect(url: string, options: RedisOptions): Redis {
  const RedisClient = loadRedis();
  if (url.startsWith('unix://')) return new RedisClient({ ...options, path: new URL(url).pathname });
  return new RedisClient(url, options);
}

export function describeRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'unix:' ? parsed.pathname : `${parsed.hostname}:${parsed.port || '6379'}`;
  } catch {
    return 'the configured URL';
  }
}
