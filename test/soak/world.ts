import { randomUUID } from 'node:crypto';
import { TokenTransportError } from '../../src/flows/http-client.js';
import type { TokenHttpRequest, TokenHttpResponse } from '../../src/flows/types.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { SaveResult, StoredToken, StoreLock, TokenState, TokenStore } from '../../src/stores/types.js';

/*
 * The simulated world of the soak run: one token server, one shared store, one upstream API,
 * each with switches the fault schedule flips. No sockets: everything runs on the fake clock.
 */

/** A small seeded PRNG (mulberry32): the same seed gives the same week of faults. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type TokenServerMode = 'ok' | 'server-error' | 'refused' | 'reject-refresh' | 'reject-login';

interface IssuedToken {
  expiresAt: number;
  revoked: boolean;
}

/**
 * A session-dialect token server (login and refresh, single-use rotating refresh tokens) that
 * remembers every access token it issued and every refresh token it was sent: the judge of the
 * soak's invariants (a refresh token sent twice, an expired or revoked token used).
 */
export class SoakTokenServer {
  mode: TokenServerMode = 'ok';
  /** The password a login must send (a credential change replaces it); undefined: any. */
  password: string | undefined;
  readonly requestTimes: number[] = [];
  /** When each login succeeded (on `tick`). */
  readonly loginTimes: number[] = [];
  /** Refresh tokens this server saw a second time: the group spent one twice. */
  readonly reusedRefreshTokens: Array<{ at: number; token: string }> = [];
  readonly #issued = new Map<string, IssuedToken>();
  readonly #live = new Set<string>();
  readonly #spent = new Set<string>();

  /**
   * @param now the server's wall clock (expiry is judged on it)
   * @param tick when each request is recorded (the soak uses the monotonic clock: the wall clock jumps)
   */
  constructor(
    private readonly now: () => number,
    private readonly lifetimeS: number,
    private readonly tick: () => number = now,
  ) {}

  send = async (request: TokenHttpRequest): Promise<TokenHttpResponse> => {
    const body = JSON.parse(request.body) as Record<string, unknown>;
    const refreshToken = typeof body.refreshToken === 'string' ? body.refreshToken : undefined;
    this.requestTimes.push(this.tick());
    if (this.mode === 'refused') throw new TokenTransportError('ECONNREFUSED', 'connection refused');
    if (this.mode === 'server-error') return answer(503, '{"success":false,"message":"maintenance"}');
    if (
      refreshToken === undefined &&
      (this.mode === 'reject-login' || (this.password !== undefined && body.password !== this.password))
    )
      return answer(401, '{"success":false,"message":"invalid credentials"}');
    if (refreshToken !== undefined) {
      if (this.#spent.has(refreshToken)) this.reusedRefreshTokens.push({ at: this.now(), token: refreshToken });
      if (this.mode === 'reject-refresh' || !this.#live.has(refreshToken)) {
        this.#live.delete(refreshToken);
        this.#spent.add(refreshToken);
        return answer(401, '{"success":false,"message":"refresh token rejected"}');
      }
      this.#live.delete(refreshToken);
      this.#spent.add(refreshToken);
    }
    if (refreshToken === undefined) this.loginTimes.push(this.tick());
    const token = `tok-${randomUUID()}`;
    const nextRefresh = `ref-${randomUUID()}`;
    this.#live.add(nextRefresh);
    this.#issued.set(token, { expiresAt: this.now() + this.lifetimeS * 1000, revoked: false });
    return answer(
      200,
      JSON.stringify({ success: true, token, refreshToken: nextRefresh, tokenLifetime: this.lifetimeS }),
    );
  };

  /** The account's password changes: the old one is rejected, and every session (access and refresh tokens) ends. */
  changePassword(next: string): void {
    this.password = next;
    this.revokeAll();
    this.#live.clear(); // refused from now on; sending one is not a reuse (the group never spent it)
  }

  /** Revokes every access token issued so far (an administrator's "log everyone out"). */
  revokeAll(): void {
    for (const issued of this.#issued.values()) issued.revoked = true;
  }

  /** What the upstream API thinks of a token: `valid`, `expired`, `revoked` or `unknown`. */
  judge(token: string): 'valid' | 'expired' | 'revoked' | 'unknown' {
    const issued = this.#issued.get(token);
    if (issued === undefined) return 'unknown';
    if (issued.revoked) return 'revoked';
    return this.now() < issued.expiresAt ? 'valid' : 'expired';
  }

  /**
   * What the upstream API thinks of the token `store` holds for `account` and of each token a
   * replica serves (its `current()`): all `valid` means no client sees a 401.
   */
  async judgeServed(
    store: TokenStore,
    replicas: readonly { current(): { secret: { reveal(): string } } | undefined }[],
    account = 'acct',
  ): Promise<{ stored: string; served: string[] }> {
    const stored = await store.load(account);
    return {
      stored: this.judge(stored?.state.accessToken.reveal() ?? ''),
      served: replicas.map((replica) => this.judge(replica.current()?.secret.reveal() ?? '')),
    };
  }
}

function answer(status: number, body: string): TokenHttpResponse {
  return { status, headers: { 'content-type': 'application/json' }, body };
}

/**
 * One store shared by the replicas, like Redis: each replica gets its own view (`shared`, with
 * change notifications from the other views). `down` makes every operation reject (an outage);
 * `restart` loses every record (a Redis restart without persistence).
 */
export class SharedStoreHub {
  down = false;
  #store: MemoryTokenStore;
  readonly #listeners = new Set<{ view: number; onChange: () => void }>();

  constructor(private readonly now: () => number) {
    this.#store = new MemoryTokenStore({ now });
  }

  restart(): void {
    this.#store = new MemoryTokenStore({ now: this.now });
  }

  view(index: number): TokenStore {
    const reachable = async <T>(work: () => Promise<T>): Promise<T> => {
      if (this.down) throw new Error('store unreachable (simulated outage)');
      return work();
    };
    return {
      type: 'redis',
      shared: true,
      load: (account) => reachable(() => this.#store.load(account)),
      save: (account: string, state: TokenState, expected?: number | null, lastKnown?: number) =>
        reachable(async (): Promise<SaveResult> => {
          const result = await this.#store.save(account, state, expected, lastKnown);
          if (result.saved) this.#notifyOthers(index);
          return result;
        }),
      obtainLock: (account, ttlMs) =>
        reachable(async (): Promise<StoreLock | undefined> => {
          const lock = await this.#store.obtainLock(account, ttlMs);
          if (lock === undefined) return undefined;
          return {
            extend: (ms) => reachable(() => lock.extend(ms)),
            release: () => reachable(() => lock.release()),
          };
        }),
      subscribe: (_account, onChange) => {
        const listener = { view: index, onChange };
        this.#listeners.add(listener);
        return () => this.#listeners.delete(listener);
      },
      close: async () => undefined,
    };
  }

  #notifyOthers(fromView: number): void {
    for (const listener of this.#listeners) if (listener.view !== fromView) queueMicrotask(listener.onChange);
  }
}

export type { StoredToken };
