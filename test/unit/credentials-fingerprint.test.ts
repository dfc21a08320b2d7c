import * as crypto from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SidecarMetrics } from '../../src/admin/metrics.js';
import { buildTokenSide, replaceManagers, type BuildAccount, type RunningAccount } from '../../src/app-accounts.js';
import { credentialsFingerprint } from '../../src/config/credentials-fingerprint.js';
import { canonicalSetting } from '../../src/config/reload-diff.js';
import type { AccountConfig } from '../../src/config/resolve.js';
import { TokenCodec } from '../../src/stores/codec.js';
import { FileTokenStore } from '../../src/stores/file.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import type { TokenStore } from '../../src/stores/types.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { SESSION_AUTH, testAccount } from '../helpers/token-manager-setup.js';

/*
 * H2: what computing a credentials fingerprint costs and where it may fail. node:crypto's scrypt
 * is wrapped so a test sees every computation, how many run at once, and can make one fail.
 */

type ScryptCallback = (error: Error | null, digest: Buffer) => void;
const scryptCalls = { running: 0, most: 0, total: 0, failNext: 0 };

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  const scrypt = (...args: unknown[]) => {
    const done = args.pop() as ScryptCallback;
    scryptCalls.total++;
    if (scryptCalls.failNext > 0) {
      scryptCalls.failNext--;
      setImmediate(() => done(new Error('scrypt: memory limit exceeded'), Buffer.alloc(0)));
      return;
    }
    scryptCalls.running++;
    scryptCalls.most = Math.max(scryptCalls.most, scryptCalls.running);
    (actual.scrypt as (...inner: unknown[]) => void)(...args, (error: Error | null, digest: Buffer) => {
      scryptCalls.running--;
      done(error, digest);
    });
  };
  return { ...actual, default: { ...actual, scrypt }, scrypt };
});

afterEach(() => {
  Object.assign(scryptCalls, { running: 0, most: 0, total: 0, failNext: 0 });
});

/** The fingerprint an auth with nothing secret in its settings had: a SHA-256 of them. */
function plainDigest(account: AccountConfig): string {
  const settings = JSON.stringify(canonicalSetting(account.auth, () => ({ secret: 1 })));
  return `cf1:${crypto.createHash('sha256').update(`bearer-sidecar/cf1\0${settings}`).digest('base64url')}`;
}

function tokenSideOn(store: TokenStore, account: AccountConfig) {
  const metrics = new SidecarMetrics(
    new Registry(),
    { accountNames: () => [], tokenStatus: () => undefined, now: () => 0 },
    { defaultMetrics: false },
  );
  return buildTokenSide(account, store, {
    metrics,
    logger: silentLogger(),
    clock: new FakeClock(),
    send: () => Promise.reject(new Error('no token server here')),
    random: () => 0.5,
    tracing: undefined,
  });
}

describe('H2 computing the credentials fingerprint', () => {
  it('H2: a failed computation (scrypt out of memory) is not kept: the next one computes it again', async () => {
    const auth = testAccount({ ...SESSION_AUTH, password: 'failing-once' }).auth;
    scryptCalls.failNext = 1;
    await expect(credentialsFingerprint(auth)).rejects.toThrow(/memory/);
    await expect(credentialsFingerprint(auth)).resolves.toMatch(/^cf1:[A-Za-z0-9_-]{43}$/);
    expect(scryptCalls.total).toBe(2);
  });

  it('H2: for the memory store (nothing leaves the process) a token manager computes no scrypt; for a file store it does', async () => {
    const account = testAccount({ ...SESSION_AUTH, password: 'memory-only-secret' });
    const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
    const side = tokenSideOn(new MemoryTokenStore(), account);
    await tick();
    expect(scryptCalls.total).toBe(0);
    expect(await credentialsFingerprint(account.auth, { inProcess: true })).toMatch(/^cl1:[A-Za-z0-9_-]{43}$/);
    expect(scryptCalls.total).toBe(0);
    // The control: a file store's token manager starts its scrypt computation from construction on.
    const dir = mkdtempSync(join(tmpdir(), 'bs-fingerprint-'));
    const file = new FileTokenStore({ path: join(dir, 'state.json'), codec: new TokenCodec(), logger: silentLogger() });
    const persisted = tokenSideOn(file, account);
    await tick();
    expect(scryptCalls.total).toBe(1);
    expect(await credentialsFingerprint(account.auth)).toMatch(/^cf1:/); // the same computation, awaited
    expect(scryptCalls.total).toBe(1);
    await Promise.all([side.manager.stop(), persisted.manager.stop(), file.close()]);
    rmSync(dir, { recursive: true });
  });

  it('H2: eight accounts starting at once never run two scrypt computations at the same time', async () => {
    const auths = Array.from(
      { length: 8 },
      (_, index) => testAccount({ ...SESSION_AUTH, password: `p-${index}` }).auth,
    );
    const fingerprints = await Promise.all(auths.map((auth) => credentialsFingerprint(auth)));
    expect(new Set(fingerprints).size).toBe(8);
    expect(scryptCalls.total).toBe(8);
    expect(scryptCalls.most).toBe(1);
  });

  it('H2: extraParams values and the user info or query of an auth URL count as secrets: scrypt, never a plain SHA-256 of them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-fingerprint-'));
    writeFileSync(join(dir, 'secret'), 'a-secret-in-a-file', { mode: 0o600 });
    const { password: _inline, ...noInline } = { ...SESSION_AUTH, passwordFile: join(dir, 'secret') };
    const oauth2 = {
      flow: 'oauth2',
      grant: 'client_credentials',
      tokenUrl: 'https://token.test/token',
      clientId: 'the-client',
      clientSecretFile: join(dir, 'secret'),
    };
    const accounts = [
      testAccount({ ...oauth2, extraParams: { api_key: 'an-api-key-in-plain-settings' } }),
      testAccount({ ...oauth2, tokenUrl: 'https://client:url-password@token.test/token' }),
      testAccount({ ...oauth2, tokenUrl: 'https://token.test/token?key=a-key-in-the-query' }),
      testAccount({ ...noInline, loginUrl: 'https://token.test/auth/login?apikey=in-the-login-url' }),
      testAccount({ ...noInline, refreshUrl: 'https://user:pw@token.test/auth/refresh' }),
    ];
    for (const [index, account] of accounts.entries()) {
      const fingerprint = await credentialsFingerprint(account.auth);
      expect(scryptCalls.total).toBe(index + 1);
      expect(fingerprint).not.toBe(plainDigest(account));
    }
    // Settings with nothing secret in them keep the shortcut.
    const plain = testAccount(oauth2);
    expect(await credentialsFingerprint(plain.auth)).toBe(plainDigest(plain));
    expect(scryptCalls.total).toBe(accounts.length);
    rmSync(dir, { recursive: true });
  });
});

describe('H2 a reload carries what a token manager takes records for', () => {
  it("H2: a reload that keeps a changed auth but changes refresh.at still takes unmarked records as the old credentials'", async () => {
    const config = testAccount(SESSION_AUTH, { refresh: { at: 0.8 } });
    const next = testAccount(SESSION_AUTH, { refresh: { at: 0.7 } });
    const running = {
      name: 'acct',
      config,
      newChain: true,
      spentRefreshTokens: undefined,
      manager: { stop: () => Promise.resolve() },
    } as unknown as RunningAccount;
    const build = vi.fn(
      (built: AccountConfig, _from?: Parameters<BuildAccount>[1]) =>
        ({ ...running, config: built }) as unknown as RunningAccount,
    );
    await replaceManagers({ accounts: new Map(), added: [], replaced: [next] }, [running], {
      build,
      stopping: () => false,
    });
    expect(build.mock.calls[0]?.[1]?.chain?.newChain).toBe(true);
  });
});
