import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RESUBSCRIBE_EVERY_MS, RedisNotifications } from '../../src/stores/redis-notifications.js';
import type { RedisClient } from '../../src/stores/redis-scripts.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** An error as ioredis gives a Redis error reply. */
function replyError(message: string): Error {
  const error = new Error(message);
  error.name = 'ReplyError';
  return error;
}

/**
 * A subscriber connection the test answers: each SUBSCRIBE is accepted or refused by `answer`,
 * and its times (on the fake clock) are kept.
 */
class ScriptedSubscriber extends EventEmitter {
  status = 'wait';
  disconnected = false;
  readonly subscribedAt: number[] = [];
  answer: () => Promise<unknown> = () => Promise.resolve(1);

  constructor(private readonly clock: FakeClock) {
    super();
  }

  subscribe(): Promise<unknown> {
    this.subscribedAt.push(this.clock.monotonic());
    return this.answer();
  }

  disconnect(): void {
    this.disconnected = true;
    this.status = 'end';
  }

  /** Comes up, as ioredis does after a (re)connection. */
  ready(): void {
    this.status = 'ready';
    this.emit('ready');
  }
}

function setUp() {
  const clock = new FakeClock();
  const client = new ScriptedSubscriber(clock);
  const log = captureLogger();
  const notifications = new RedisNotifications({
    client: client as unknown as RedisClient,
    channel: 'bearer-sidecar:events',
    logger: log.logger,
    where: () => '127.0.0.1:6379',
    clock,
  });
  const start = clock.monotonic();
  const gaps = () => client.subscribedAt.map((at, i) => at - (client.subscribedAt[i - 1] ?? start));
  const messages = () =>
    log.lines().map((line) => `${line.level} ${String(line.msg).split(' ').slice(0, 3).join(' ')}`);
  return { clock, client, log, notifications, gaps, messages };
}

const REFUSED = '40 redis refused to';
const MENDED = '30 redis accepted the';

describe('T10 redis store notifications: the subscription', () => {
  it('T10: refused SUBSCRIBEs are retried after 1, 2, 4, 8, 16 s, then every 30 s, with one warning for the whole run of refusals', async () => {
    const { clock, client, gaps, messages } = setUp();
    client.answer = () => Promise.reject(replyError('NOPERM this user has no permissions to access the channel'));
    client.ready();
    await clock.advance(125_000); // at 0, 1, 3, 7, 15, 31, 61, 91 and 121 s
    expect(gaps()).toEqual([0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    expect(messages()).toEqual([REFUSED]);
  });

  it('T10: once accepted again it says so (info), is sent again every 30 s, and a later refusal is warned anew, its retries from 1 s', async () => {
    const { clock, client, gaps, messages } = setUp();
    client.answer = () => Promise.reject(replyError('NOPERM'));
    client.ready();
    await clock.advance(3_000); // refused at 0, 1 and 3 s
    client.answer = () => Promise.resolve(1);
    await clock.advance(4_000 + 2 * RESUBSCRIBE_EVERY_MS); // accepted at 7 s, sent again at 37 and 67 s
    client.answer = () => Promise.reject(replyError('NOPERM'));
    await clock.advance(RESUBSCRIBE_EVERY_MS + 1_000); // refused at 97 s, retried at 98 s
    expect(gaps()).toEqual([0, 1_000, 2_000, 4_000, 30_000, 30_000, 30_000, 1_000]);
    expect(messages()).toEqual([REFUSED, MENDED, REFUSED]);
  });

  it('T10: a SUBSCRIBE lost with its connection is no refusal: nothing is warned, and the next connection subscribes', async () => {
    const { clock, client, gaps, messages } = setUp();
    client.answer = () => Promise.reject(new Error('Connection is closed.'));
    client.ready();
    await clock.advance(10_000);
    expect(gaps()).toEqual([0]);
    client.answer = () => Promise.resolve(1);
    client.ready();
    expect(client.subscribedAt).toHaveLength(2);
    expect(messages()).toEqual([]);
  });

  it('T10: answered resolves at the first answer, a refusal included (the store is reachable), and close() leaves no timer and no retry', async () => {
    const { clock, client, notifications } = setUp();
    let answered = false;
    void notifications.answered.then(() => (answered = true));
    client.answer = () => Promise.reject(replyError('NOPERM'));
    client.ready();
    await clock.advance(0);
    expect(answered).toBe(true);
    expect(clock.pendingTimers()).toBe(1);
    notifications.close();
    expect(clock.pendingTimers()).toBe(0);
    expect(client.disconnected).toBe(true);
    await clock.advance(RESUBSCRIBE_EVERY_MS * 4);
    expect(client.subscribedAt).toHaveLength(1);
  });

  it("T10: a message names the account whose state another process saved: only that account's listeners are called, until they unsubscribe", () => {
    const { client, notifications } = setUp();
    const heard: string[] = [];
    const stop = notifications.listen('a', () => heard.push('a'));
    notifications.listen('b', () => heard.push('b'));
    client.emit('message', 'bearer-sidecar:events', 'a');
    stop();
    client.emit('message', 'bearer-sidecar:events', 'a');
    client.emit('message', 'bearer-sidecar:events', 'b');
    expect(heard).toEqual(['a', 'b']);
  });
});
