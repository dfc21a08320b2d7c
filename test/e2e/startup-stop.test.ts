import { describe, expect, it } from 'vitest';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { useHarness } from '../helpers/harness.js';
import { connectionRefused } from '../helpers/raw-client.js';

const harness = useHarness();

/** A store whose ready() never answers (a frozen Redis), telling the test when start-up is waiting on it. */
class FrozenStore extends MemoryTokenStore {
  readonly waiting: Promise<void>;
  #startedWaiting: () => void = () => undefined;

  constructor() {
    super();
    this.waiting = new Promise((resolve) => (this.#startedWaiting = resolve));
  }

  ready(): Promise<void> {
    this.#startedWaiting();
    return new Promise(() => undefined);
  }
}

describe('R5: a stop during start-up', () => {
  it('R5: stop() while start() waits on the store: start-up ends early, no token is requested, every port is closed', async () => {
    const store = new FrozenStore();
    let tokenRequests = 0;
    const sidecar = await harness.sidecar(
      {
        accounts: {
          crm: {
            upstream: 'http://127.0.0.1:9',
            default: true,
            auth: { flow: 'oauth2', tokenUrl: 'http://127.0.0.1:9/token', clientId: 'app', clientSecret: 'cs' },
          },
        },
      },
      {
        deps: {
          clock: new FakeClock(),
          logger: captureLogger().logger,
          store,
          send: async () => {
            tokenRequests += 1;
            return { status: 500, headers: {}, body: '' };
          },
        },
        start: false,
      },
    );
    const starting = sidecar.start();
    await store.waiting;
    const data = sidecar.dataUrl();
    const admin = sidecar.adminUrl();

    await sidecar.stop();
    await starting;

    expect(tokenRequests).toBe(0);
    expect(sidecar.manager('crm')?.status().state).toBe('stopped');
    expect(await connectionRefused(data)).toBe(true);
    expect(await connectionRefused(admin)).toBe(true);
  });

  it('R5: stop() before start(): start() then binds nothing', async () => {
    const sidecar = await harness.sidecar(
      {
        accounts: {
          crm: {
            upstream: 'http://127.0.0.1:9',
            auth: { flow: 'oauth2', tokenUrl: 'http://127.0.0.1:9/token', clientId: 'app', clientSecret: 'cs' },
          },
        },
      },
      { deps: { clock: new FakeClock() }, start: false },
    );
    await sidecar.stop();
    await sidecar.start();
    expect(sidecar.dataUrl()).toBe('');
    expect(sidecar.adminUrl()).toBe('');
  });
});
