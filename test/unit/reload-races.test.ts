import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pool } from 'undici';
import { describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { SidecarConfig } from '../../src/config/resolve.js';
import type { UpstreamPool } from '../../src/proxy/upstream.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { StoredToken } from '../../src/stores/types.js';
import { useHarness } from '../helpers/harness.js';
import { makeTestCertificates } from '../helpers/test-certificates.js';

// Every upstream pool the sidecar builds, to check that each one is closed in the end.
const pools = vi.hoisted(() => [] as UpstreamPool[]);
vi.mock('../../src/proxy/transport.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/proxy/transport.js')>();
  return {
    ...original,
    createUpstreamPool: (...args: Parameters<typeof original.createUpstreamPool>) => {
      const pool = original.createUpstreamPool(...args);
      pools.push(pool);
      return pool;
    },
  };
});

const harness = useHarness();

/** The reference store, whose next `load` can be held until the test releases it. */
class HeldLoadStore extends MemoryTokenStore {
  #hold: { reached: () => void; gate: Promise<void> } | undefined;

  /** Holds the next load: `reached` resolves when it comes, `release` lets it go on. */
  holdNextLoad(): { reached: Promise<void>; release: () => void } {
    let release: () => void = () => undefined;
    let reached: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const arrival = new Promise<void>((resolve) => (reached = resolve));
    this.#hold = { reached, gate };
    return { reached: arrival, release };
  }

  #failNext = false;

  /** The next load fails, as a store in a failover does. */
  failNextLoad(): void {
    this.#failNext = true;
  }

  override async load(account: string): Promise<StoredToken | undefined> {
    if (this.#failNext) {
      this.#failNext = false;
      throw new Error('store unreachable (a failover)');
    }
    const hold = this.#hold;
    this.#hold = undefined;
    if (hold !== undefined) {
      hold.reached();
      await hold.gate;
    }
    return super.load(account);
  }
}

function sessionAccount(loginUrl: string, password: string, extra: Record<string, unknown> = {}) {
  return { upstream: 'http://127.0.0.1:9/api', auth: { flow: 'session', loginUrl, username: 'u', password }, ...extra };
}

/** `config` with account `name`'s refresh timeout changed: a token-side setting, so a new token manager. */
function withRefreshTimeout(config: SidecarConfig, name: string, timeoutMs: number): SidecarConfig {
  return {
    ...config,
    accounts: config.accounts.map((account) =>
      account.name === name ? { ...account, refresh: { ...account.refresh, timeoutMs } } : account,
    ),
  };
}

/**
 * A sidecar started from `raw(false)`, then reloaded with `raw(true)` while the reload's read of
 * the store is held (`held.release()` lets it go on); `before` is how many pools existed before it.
 */
async function reloadHeldAtStoreRead(store: HeldLoadStore, raw: (changed: boolean) => Record<string, unknown>) {
  const sidecar = await harness.sidecar(raw(false), { deps: { store } });
  const before = pools.length;
  const held = store.holdNextLoad();
  const reload = sidecar.reload(
    parseConfig({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, ...raw(true) }),
  );
  await held.reached;
  return { sidecar, before, held, reload };
}

/** `config` with account `name`'s credentials changed (another account id): a new chain. */
function withNewCredentials(config: SidecarConfig, name: string): SidecarConfig {
  return {
    ...config,
    accounts: config.accounts.map((account) =>
      account.name === name ? { ...account, auth: { ...account.auth, accountId: 7 } as typeof account.auth } : account,
    ),
  };
}

describe('H2 live reload: races with stop, and what a new token manager inherits', () => {
  it('H2: a reload racing stop() closes every upstream pool it built', async () => {
    const { tokenServer, password } = await harness.sessionTokenServer();
    const store = new HeldLoadStore();
    const raw = (changed: boolean) => ({
      accounts: {
        // Upstream changed: rebuilt on the same token manager (a new pool).
        moved: sessionAccount(tokenServer.loginUrl, password, {
          default: true,
          ...(changed ? { upstream: 'http://127.0.0.1:9/v2' } : {}),
        }),
        // Auth changed: a new token manager, after the store is read (held here) for the old chain's revision.
        reauth: sessionAccount(tokenServer.loginUrl, password, {
          route: { pathPrefix: '/r' },
          ...(changed
            ? { auth: { flow: 'session', loginUrl: tokenServer.loginUrl, username: 'u', password, accountId: 7 } }
            : {}),
        }),
      },
    });
    const { sidecar, before, held, reload } = await reloadHeldAtStoreRead(store, raw);
    const stopped = sidecar.stop();
    held.release();
    await Promise.all([reload, stopped]);
    expect(pools.length).toBeGreaterThan(before);
    expect(pools.map((pool) => (pool as Pool).destroyed)).toEqual(pools.map(() => true));
  });

  it('H2: a reload whose account cannot be built closes every pool it built and leaves the running accounts as they were', async () => {
    const { tokenServer, password } = await harness.sessionTokenServer();
    const store = new HeldLoadStore();
    const certificates = makeTestCertificates();
    const caFile = join(mkdtempSync(join(tmpdir(), 'reload-ca-')), 'ca.pem');
    writeFileSync(caFile, certificates.ca);
    certificates.remove();
    const raw = (changed: boolean) => ({
      accounts: {
        kept: sessionAccount(tokenServer.loginUrl, password, { default: true }),
        // Auth changed: its new token manager is built after the store read (held here), and reads caFile.
        reauth: sessionAccount(tokenServer.loginUrl, password, {
          route: { pathPrefix: '/r' },
          ...(changed
            ? {
                upstreamTls: { caFile },
                auth: { flow: 'session', loginUrl: tokenServer.loginUrl, username: 'u', password, accountId: 7 },
              }
            : {}),
        }),
        // Added by the reload: built (a pool) and started at once.
        ...(changed ? { added: sessionAccount(tokenServer.loginUrl, password, { route: { pathPrefix: '/a' } }) } : {}),
      },
    });
    const { sidecar, before, held, reload } = await reloadHeldAtStoreRead(store, raw);
    rmSync(caFile); // gone between validation and use
    held.release();
    await expect(reload).rejects.toThrow();
    const built = pools.slice(before);
    expect(built.length).toBeGreaterThan(0);
    expect(built.map((pool) => (pool as Pool).destroyed)).toEqual(built.map(() => true));
    expect(sidecar.config.accounts.map((account) => account.name)).toEqual(['kept', 'reauth']);
  });

  it('H2: a new token manager of a reload (same auth) never sends a refresh token the old one spent', async () => {
    const store = new MemoryTokenStore();
    const session = await harness.session({ deps: { store } });
    const { sidecar, tokenServer } = session;
    await sidecar.settled();
    const first = await store.load('fleet');
    expect(first?.state.refreshToken).toBeDefined();
    // The scheduled refresh (at 0.8 of 60 s) spends the first refresh token.
    await session.advance(50_000);
    expect(tokenServer.stats.refreshes).toBe(1);
    // A failover loses that refresh: the store holds the first state again, spent refresh token and all.
    await store.save('fleet', (first as StoredToken).state);
    const result = await sidecar.reload(withRefreshTimeout(sidecar.config, 'fleet', 7_000));
    expect(result.outcome === 'applied' && result.changes.changed).toEqual([{ account: 'fleet', parts: ['refresh'] }]);
    // The new manager adopts the stored state; its renewal is overdue, so it asks for a token at once.
    await session.advance(1_000);
    const { stats } = tokenServer;
    await vi.waitFor(() => expect(stats.logins + stats.refreshTokenReuse).toBeGreaterThan(1));
    expect(stats.refreshTokenReuse).toBe(0);
    expect(stats.logins).toBe(2);
  });

  it('H2: new credentials never adopt the old chain, even when the store cannot be read as the token manager is replaced', async () => {
    const store = new HeldLoadStore();
    const session = await harness.session({ deps: { store } });
    const { sidecar, tokenServer } = session;
    await sidecar.settled();
    const old = (await store.load('fleet'))?.state.accessToken.reveal();
    store.failNextLoad(); // the first read after the old token manager stopped: a failover
    const result = await sidecar.reload(withNewCredentials(sidecar.config, 'fleet'));
    expect(result.outcome === 'applied' && result.changes.changed).toEqual([{ account: 'fleet', parts: ['auth'] }]);
    await session.advance(1_000);
    await vi.waitFor(() => expect(tokenServer.stats.logins).toBe(2));
    const stored = (await store.load('fleet'))?.state.accessToken.reveal();
    expect(stored).toBeDefined();
    expect(stored).not.toBe(old);
    expect(tokenServer.stats.refreshes).toBe(0);
  });
});
