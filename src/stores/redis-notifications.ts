import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { messageOf } from '../util/errors.js';
import { reconnectWhenEnded } from './redis-connect.js';
import type { RedisClient } from './redis-scripts.js';

/** The first wait after a refused SUBSCRIBE (ms); it doubles with each refusal in a row. */
const REFUSED_RETRY_MS = 1_000;
/**
 * How often the subscription is sent again while all is well, and the longest wait after
 * refusals (ms). Sending it again is harmless (Redis ignores a channel already subscribed) and
 * finds a subscription lost without our hearing of it: a Cluster client moves its subscriber
 * to another node on its own and swallows a refusal there.
 */
export const RESUBSCRIBE_EVERY_MS = 30_000;

const SUBSCRIBE_REFUSED =
  "redis refused to subscribe to the store's events channel: this replica does not hear other replicas' saves until it can; retrying (check the ACL's channel permissions)";
const SUBSCRIBE_MENDED = "redis accepted the subscription to the store's events channel again";

export interface RedisNotificationsOptions {
  /** A fresh connection that may queue commands (enableOfflineQueue), with autoResubscribe off. */
  client: RedisClient;
  /** The events channel's full name (`<keyPrefix>events`). */
  channel: string;
  logger: Logger;
  /** Where the server is, for log lines: hosts and ports, never a password. */
  where: () => string;
  /** Timers of the retries and renewals (the system clock by default). */
  clock?: Pick<Clock, 'setTimer' | 'clearTimer'>;
}

/**
 * The Redis store's notifications (T10): one subscriber connection on the store's events channel,
 * where each message names an account whose state another process saved. The subscription is
 * sent on every (re)connection and again every RESUBSCRIBE_EVERY_MS. A SUBSCRIBE that Redis
 * refuses (an ACL without the channel answers NOPERM) is logged once as a warning per run of
 * refusals and retried 1 s later, then at doubling intervals up to 30 s; once accepted again that
 * is logged (info): a replica that cannot hear the others says so, and mending the ACL needs no
 * restart. A connection that ioredis ends without our asking is connected again.
 */
export class RedisNotifications {
  readonly #o: RedisNotificationsOptions;
  readonly #clock: Pick<Clock, 'setTimer' | 'clearTimer'>;
  readonly #listeners = new Map<string, Set<() => void>>();
  readonly #stopReviving: () => void;
  #next: TimerHandle | undefined;
  /** Refusals in a row; 0 once a SUBSCRIBE is accepted. */
  #refusals = 0;
  #closed = false;
  #answered: () => void = () => undefined;
  /**
   * Resolves at Redis's first answer to a SUBSCRIBE, accepted or refused (a refusal is logged and
   * retried here; it is no reason to call the store unreachable). Never resolves while no
   * connection is made.
   */
  readonly answered = new Promise<void>((resolve) => (this.#answered = resolve));

  constructor(options: RedisNotificationsOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    const { client, logger, where } = options;
    this.#stopReviving = reconnectWhenEnded(client, 'notifications', logger, where);
    // Connection errors are reported where an operation fails; here they would only be noise.
    client.on('error', () => undefined);
    client.on('message', (_channel: string, account: string) => {
      for (const listener of this.#listeners.get(account) ?? []) listener();
    });
    client.on('ready', () => this.#subscribe());
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

  /** Stops listening and closes the connection: no reconnection, retry or renewal after it. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#schedule(undefined);
    this.#stopReviving();
    this.#o.client.disconnect();
  }

  #subscribe(): void {
    this.#schedule(undefined);
    if (this.#closed || this.#o.client.status !== 'ready') return;
    const { client, channel, logger, where } = this.#o;
    client.subscribe(channel).then(
      () => {
        if (this.#refusals > 0) logger.info({ redis: where() }, SUBSCRIBE_MENDED);
        this.#refusals = 0;
        this.#answered();
        this.#schedule(RESUBSCRIBE_EVERY_MS);
      },
      (error: unknown) => {
        // A lost connection is no refusal: its 'ready' subscribes again.
        if (this.#closed || !(error instanceof Error && error.name === 'ReplyError')) return;
        if (this.#refusals === 0) logger.warn({ redis: where(), error: messageOf(error) }, SUBSCRIBE_REFUSED);
        this.#answered();
        this.#schedule(Math.min(RESUBSCRIBE_EVERY_MS, REFUSED_RETRY_MS * 2 ** this.#refusals));
        this.#refusals += 1;
      },
    );
  }

  /** One pending attempt at most: the next after `delayMs`, or none. */
  #schedule(delayMs: number | undefined): void {
    if (this.#next !== undefined) this.#clock.clearTimer(this.#next);
    this.#next =
      delayMs === undefined || this.#closed ? undefined : this.#clock.setTimer(() => this.#subscribe(), delayMs);
  }
}
