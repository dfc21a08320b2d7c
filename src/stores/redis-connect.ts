import { parseHostPort } from '../util/host-port.js';
import { createRequire } from 'node:module';
import type { Cluster, RedisOptions } from 'ioredis';
import type { RedisClient } from './redis-scripts.js';
import type { Logger } from '../util/logger.js';
import type { Secret } from '../util/secret.js';

/*
 * How the Redis store reaches Redis (T10, H1): one server by URL, the master a Sentinel group
 * names, or a Redis Cluster. Failover is ioredis's own: with Sentinel it asks the sentinels for the
 * current master on every reconnection (and listens for their switch-master news); a Cluster
 * client follows MOVED answers and refreshes its slot map. Nothing here chooses a master itself.
 */

/** Where the store's Redis is: exactly one of `url`, `sentinels` (+ `name`), `cluster`. */
export interface RedisTarget {
  /** `redis://`, `rediss://` (TLS) or `unix:///path/to/redis.sock`. */
  url?: string | undefined;
  /** `host:port` of each sentinel; `name` is the master they monitor. */
  sentinels?: readonly string[] | undefined;
  name?: string | undefined;
  /** `host:port` of some Cluster nodes (the client discovers the rest). */
  cluster?: readonly string[] | undefined;
  /** ACL user and password for the data nodes (not the sentinels); they override any in `url`. */
  username?: string | undefined;
  password?: Secret | undefined;
  /** TLS for every connection (data nodes and sentinels): trust and a client certificate (H1). */
  tls?: RedisTls | undefined;
}

/** The contents of `store.tls`'s files, as Node's TLS options take them. */
export interface RedisTls {
  /** Node's own CAs plus the configured one (F4: added, never replacing). */
  ca?: string[];
  cert?: string;
  key?: string;
}

/**
 * ioredis is loaded only when a Redis store is configured: loaded and unused it would add about
 * 10 MiB to every sidecar's resident memory (measured in the README's Performance section).
 */
const loadIoredis = (): typeof import('ioredis') =>
  createRequire(import.meta.url)('ioredis') as typeof import('ioredis');

/** `host:port` (or `[v6]:port`) as ioredis takes it; the config schema has refused any other shape. */
export function parseAddress(address: string): { host: string; port: number } {
  const { host, port } = parseHostPort(address);
  return { host: host ?? 'localhost', port: Number(port) };
}

/** A client for `target` with `options` (timeouts, retries, offline queue) on every connection it makes. */
export function connectRedis(target: RedisTarget, options: RedisOptions): RedisClient {
  const { Redis: RedisClass, Cluster: ClusterClass } = loadIoredis();
  const credentials = {
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password.reveal() }),
    ...(target.tls === undefined ? {} : { tls: target.tls }),
  };
  if (target.cluster !== undefined) return connectCluster(ClusterClass, target.cluster, { ...options, ...credentials });
  if (target.sentinels !== undefined)
    return new RedisClass({
      ...options,
      ...credentials,
      sentinels: target.sentinels.map(parseAddress),
      name: target.name ?? 'mymaster',
      // Choice made: a group that encrypts its data nodes encrypts its sentinels too.
      ...(target.tls === undefined ? {} : { enableTLSForSentinelMode: true, sentinelTLS: target.tls }),
      // A SIGKILLed master is noticed at once by the sentinels' switch-master news, not only at reconnection.
      failoverDetector: true,
      sentinelRetryStrategy: (attempt: number) => Math.min(2_000, 100 * attempt),
    });
  const url = target.url ?? 'redis://127.0.0.1:6379';
  if (url.startsWith('unix://')) return new RedisClass({ ...options, ...credentials, path: new URL(url).pathname });
  return new RedisClass(url, { ...options, ...credentials });
}

/** How long after a client ended without our asking it is connected again (ms). */
const REVIVE_DELAY_MS = 1_000;
const REDIS_CLIENT_REVIVED = 'redis client had stopped reconnecting: connecting again';

/**
 * Connects `client` again whenever it ends while it is still wanted, 1 s after it ended, with a
 * warning naming the connection (`name`) and where (`where()`: never a password), until the
 * returned function is called (call it before closing the client on purpose). Why: ioredis 6 ends
 * a Sentinel client for good when a switch-master notice lands while the client is asking a
 * sentinel where the master is (its failover detector closes the connector mid-question, the
 * connect rejects, the status becomes `end` and no retry follows), so one failover could leave a
 * sidecar without its store until restarted (H1, T10: the store is retried, never given up).
 */
export function reconnectWhenEnded(
  client: RedisClient,
  name: 'commands' | 'notifications',
  logger: Logger,
  where: () => string,
): () => void {
  let wanted = true;
  let timer: NodeJS.Timeout | undefined;
  client.on('end', () => {
    if (!wanted || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (!wanted) return;
      logger.warn({ redis: where(), client: name }, REDIS_CLIENT_REVIVED);
      // A failed attempt ends the client again, which schedules the next one.
      client.connect().catch(() => undefined);
    }, REVIVE_DELAY_MS);
  });
  return () => {
    wanted = false;
    clearTimeout(timer);
  };
}

function connectCluster(ClusterClass: typeof Cluster, nodes: readonly string[], options: RedisOptions): Cluster {
  const { enableOfflineQueue, retryStrategy, ...redisOptions } = options;
  return new ClusterClass(nodes.map(parseAddress), {
    redisOptions,
    enableOfflineQueue,
    clusterRetryStrategy: retryStrategy ? (attempt: number) => retryStrategy(attempt) ?? null : undefined,
    // A MOVED or a node down during a resharding or failover is retried, a few times, quickly.
    maxRedirections: 8,
    retryDelayOnFailover: 100,
  });
}

/** Where Redis is, for messages: hosts and ports (or the socket path) only, never a password. */
export function describeRedisTarget(target: RedisTarget): string {
  if (target.cluster !== undefined) return `cluster ${target.cluster.join(',')}`;
  if (target.sentinels !== undefined) return `sentinels ${target.sentinels.join(',')} (${target.name ?? ''})`;
  return describeRedisUrl(target.url ?? '');
}

/** Host and port (or socket path) of a Redis URL: a URL may carry a password. */
function describeRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'unix:' ? parsed.pathname : `${parsed.hostname}:${parsed.port || '6379'}`;
  } catch {
    return 'the configured URL';
  }
}
