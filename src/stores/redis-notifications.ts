import type { Logger } from '../util/logger.js';
import { messageOf } from '../util/errors.js';
import { reconnectWhenEnded } from './redis-connect.js';
import type { RedisClient } from './redis-scripts.js';

/** How long after a client ended without our asking it is connected again (see reconnectWhenEnded). */
export const REVIVE_DELAY_MS = 1_000;
/** The longest wait between two SUBSCRIBEs the server refused (ms): an ACL mended is heard within it. */
const RESUBSCRIBE_MAX_DELAY_MS = 30_000;

export const REDIS_CLIENT_REVIVED = 'redis client had stopped reconnecting: connecting again';
const SUBSCRIBE_REFUSED =
  "redis refused to subscribe to the store's events channel: this replica does not hear other replicas' saves until it can; retrying (check the ACL's channel permissions)";
const SUBSCRIBE_MENDED = "redis accepted the subscription to the store's events channel again";

/**
 * The Redis store's notifications (T10): one subscriber connection on the store's events channel,
 * where each message names an account whose state another process saved. It subscribes on every
 * (re)connection. A SUBSCRIBE the server refuses (an ACL without the channel: NOPERM) is logged
 * once as a warning and retried, 1 s after the refusal and then at doubling intervals up to 30 s,
 * until accepted (logged then): a replica that cannot hear the others says so, and mending the ACL
 * needs no restart. A connection that ioredis ends without our asking is connected again.
 */
export class RedisNotifications {
  readonly #client: RedisClient;
  readonly #listeners = new Map<string, Set<() => void>>();
  readonly #stopReviving: () => void;
  #retry: NodeJS.Timeout | undefined;
  #refusals = 0;
  #closed = false;
  /** Resolves at the first accepted subscription. */
  readonly subscribed: Promise<void>;

  /**
   * `client` is a fresh connection that may queue commands (enableOfflineQueue); `channel` the
   * events channel's full name; `where` describes the server for log lines (never a password).
   */
  constructor(client: RedisClient, channel: string, logger: Logger, where: () => string) {
    this.#client = client;
    this.#stopReviving = reconnectWhenEnded(client, REVIVE_DELAY_MS, () =>
      logger.warn({ redis: where(), client: 'notifications' }, REDIS_CLIENT_REVIVED),
    );
    // Connection errors are reported where an operation fails; here they would only be noise.
    client.on('error', () => undefined);
    client.on('message', (_channel: string, account: string) => {
      for (const listener of this.#listeners.get(account) ?? []) listener();
    });
    this.subscribed = new Promise((resolve) => {
      const subscribe = () => {
        clearTimeout(this.#retry);
        this.#retry = undefined;
        if (this.#closed || client.status !== 'ready') return;
        client.subscribe(channel).then(
          () => {
            if (this.#refusals > 0) logger.info({ redis: where() }, SUBSCRIBE_MENDED);
            this.#refusals = 0;
            resolve();
          },
          (error: unknown) => {
            if (this.#closed) return;
            if (this.#refusals === 0) logger.warn({ redis: where(), error: messageOf(error) }, SUBSCRIBE_REFUSED);
            const delay = Math.min(RESUBSCRIBE_MAX_DELAY_MS, REVIVE_DELAY_MS * 2 ** this.#refusals);
            this.#refusals += 1;
            this.#retry = setTimeout(subscribe, delay);
          },
        );
      };
      client.on('ready', subscribe);
    });
  }

  /** Calls `onChange` whenever another process saves `account`'s state; returns the unsubscribe. */
  listen(account: string, onChange: () => void): () => void {
    let listeners = this.#listeners.get(account);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(account, listeners);
    }
    listeners.add(onChange);
    return () => listeners.delete(onChange);
  }

  /** Stops listening and closes the connection (no reconnection, no retry after it). */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    clearTimeout(this.#retry);
    this.#stopReviving();
    this.#client.disconnect();
  }
}
