import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { STORE_FORMAT, StoreFormatError, TokenCodec } from '../../src/stores/codec.js';
import { FileTokenStore, STATE_FILE_FORMAT } from '../../src/stores/file.js';
import { MemoryTokenStore } from '../../src/stores/memory.js';
import { silentLogger } from '../../src/util/logger.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { describeTokenStore, makeTokenState } from './token-store.suite.js';

const START = Date.parse('2026-01-01T00:00:00Z');

/** A clock the suite moves by hand, standing in for the lock clock of the local stores. */
function fakeNow(): { now: () => number; advanceTime: (ms: number) => Promise<void> } {
  let current = START;
  return { now: () => current, advanceTime: async (ms) => void (current += ms) };
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bearer-sidecar-store-'));
}

describeTokenStore('memory', async () => {
  const clock = fakeNow();
  const store = new MemoryTokenStore({ now: clock.now });
  return { store, advanceTime: clock.advanceTime, cleanup: () => store.close() };
});

for (const variant of [
  { name: 'file (secrets in plaintext)', key: undefined },
  { name: 'file (secrets encrypted)', key: randomBytes(32) },
]) {
  describeTokenStore(variant.name, async () => {
    const clock = fakeNow();
    const dir = tempDir();
    const store = new FileTokenStore({
      path: path.join(dir, 'state.json'),
      codec: new TokenCodec(variant.key),
      logger: silentLogger(),
      now: clock.now,
    });
    return {
      store,
      advanceTime: clock.advanceTime,
      cleanup: async () => {
        await store.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  });
}

describe('T9 FileTokenStore', () => {
  let dir: string;
  let file: string;
  const key = randomBytes(32);

  beforeEach(() => {
    dir = tempDir();
    file = path.join(dir, 'state.json');
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function openStore(
    options: { key?: Buffer; logger?: ReturnType<typeof captureLogger>['logger'] } = {},
  ): FileTokenStore {
    return new FileTokenStore({
      path: file,
      codec: new TokenCodec(options.key),
      logger: options.logger ?? silentLogger(),
      now: () => START,
    });
  }

  const modeOf = (target: string): number => fs.statSync(target).mode & 0o777;
  const setAsideFiles = (): string[] => fs.readdirSync(dir).filter((name) => name.startsWith('state.json.corrupt-'));

  it('T9: the state file is created with mode 0600 and stays 0600 after every write; no temp files are left', async () => {
    const store = openStore();
    for (let i = 0; i < 5; i++) {
      await store.save(`account-${i % 2}`, makeTokenState(`mode${i}`));
      expect(modeOf(file)).toBe(0o600);
      expect(fs.readdirSync(dir)).toEqual(['state.json']);
    }
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => store.save(`parallel-${i}`, makeTokenState(`parallel${i}`))),
    );
    expect(modeOf(file)).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['state.json']);
    await store.close();
  });

  it('T9: a restarted process reads what the last one saved: state, refresh token and revision', async () => {
    const first = openStore({ key });
    const state = makeTokenState('restart');
    await first.save('acct', state);
    await first.save('acct', state);
    await first.close();

    const second = openStore({ key });
    const loaded = await second.load('acct');
    expect(loaded?.revision).toBe(2);
    expect(loaded?.state.accessToken.reveal()).toBe(state.accessToken.reveal());
    expect(loaded?.state.refreshToken?.reveal()).toBe(state.refreshToken?.reveal());
    expect(loaded?.state.expiresAt).toBe(state.expiresAt);
    await second.close();
  });

  it('T9: the file is versioned JSON with one record per account, in the documented format', async () => {
    const store = openStore();
    await store.save('b', makeTokenState('b'));
    await store.save('a', makeTokenState('a', { refreshToken: undefined }));
    const document = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      format: string;
      accounts: Record<string, Record<string, unknown>>;
    };
    expect(document.format).toBe(STATE_FILE_FORMAT);
    expect(Object.keys(document.accounts)).toEqual(['a', 'b']);
    expect(document.accounts.a).toMatchObject({
      format: STORE_FORMAT,
      revision: 1,
      refreshToken: null,
      updatedAt: new Date(START).toISOString(),
    });
    await store.close();
  });

  it('T9: a corrupt file is set aside (renamed), reported, and start-up goes on with empty state', async () => {
    const garbage = '{"format": "bearer-sidecar/state-v1", "accounts": {"acct": {"accessToken": "eyJ-leaked-token-';
    fs.writeFileSync(file, garbage, { mode: 0o600 });
    const capture = captureLogger();
    const store = openStore({ logger: capture.logger });

    expect(await store.load('acct')).toBeUndefined();

    expect(fs.existsSync(file)).toBe(false);
    const aside = setAsideFiles();
    expect(aside).toEqual([`state.json.corrupt-${new Date(START).toISOString().replace(/:/g, '-')}`]);
    expect(fs.readFileSync(path.join(dir, aside[0] ?? ''), 'utf8')).toBe(garbage);
    const errors = capture.lines().filter((line) => line.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ reason: 'not_json', path: file });
    expect(capture.text()).not.toContain('leaked-token');

    // Start-up goes on: the next save writes a fresh file and leaves the set-aside one alone.
    const state = makeTokenState('fresh');
    expect((await store.save('acct', state)).saved).toBe(true);
    expect((await store.load('acct'))?.revision).toBe(1);
    expect(setAsideFiles()).toEqual(aside);
    await store.close();
  });

  it('T9: a file of a foreign format is set aside, reported, and start-up goes on with empty state', async () => {
    fs.writeFileSync(file, JSON.stringify({ format: 'bearer-sidecar/state-v9', accounts: {} }), { mode: 0o600 });
    const capture = captureLogger();
    const store = openStore({ logger: capture.logger });
    expect(await store.load('acct')).toBeUndefined();
    expect(setAsideFiles()).toHaveLength(1);
    expect(capture.lines().find((line) => line.level === 50)).toMatchObject({ reason: 'foreign_format' });
    await store.close();
  });

  it('T9: an account record that does not decode sets the whole file aside, reported with the account name', async () => {
    const good = openStore();
    await good.save('acct', makeTokenState('good'));
    await good.close();
    const document = JSON.parse(fs.readFileSync(file, 'utf8')) as { accounts: Record<string, Record<string, unknown>> };
    delete document.accounts.acct?.expiresAt;
    fs.writeFileSync(file, JSON.stringify(document));

    const capture = captureLogger();
    const store = openStore({ logger: capture.logger });
    expect(await store.load('acct')).toBeUndefined();
    expect(setAsideFiles()).toHaveLength(1);
    const error = capture.lines().find((line) => line.level === 50);
    expect(error).toMatchObject({ reason: 'missing_field' });
    expect(String(error?.problem)).toContain('"acct"');
    await store.close();
  });

  it('T9: two files set aside in the same millisecond are both kept', async () => {
    const store = openStore();
    fs.writeFileSync(file, 'first garbage');
    await store.load('acct');
    fs.writeFileSync(file, 'second garbage');
    await store.load('acct');
    const contents = setAsideFiles().map((name) => fs.readFileSync(path.join(dir, name), 'utf8'));
    expect(contents.sort()).toEqual(['first garbage', 'second garbage']);
    await store.close();
  });

  it('T9: a file written with one key cannot be read with another: set aside, not crashed', async () => {
    const writer = openStore({ key });
    await writer.save('acct', makeTokenState('keyed'));
    await writer.close();

    const capture = captureLogger();
    const reader = openStore({ key: randomBytes(32), logger: capture.logger });
    await expect(reader.load('acct')).resolves.toBeUndefined();
    expect(setAsideFiles()).toHaveLength(1);
    expect(capture.lines().find((line) => line.level === 50)).toMatchObject({ reason: 'wrong_key' });
    expect(capture.text()).not.toContain(key.toString('hex'));
    await reader.close();
  });

  it('T9: a file with encrypted secrets opened without a key, or plaintext opened with a key, is set aside', async () => {
    const encrypted = openStore({ key });
    await encrypted.save('acct', makeTokenState('enc'));
    const capture = captureLogger();
    expect(await openStore({ logger: capture.logger }).load('acct')).toBeUndefined();
    expect(capture.lines().find((line) => line.level === 50)).toMatchObject({ reason: 'encrypted_without_key' });

    const plain = openStore();
    await plain.save('acct', makeTokenState('plain'));
    const keyed = captureLogger();
    expect(await openStore({ key, logger: keyed.logger }).load('acct')).toBeUndefined();
    expect(keyed.lines().find((line) => line.level === 50)).toMatchObject({ reason: 'plaintext_with_key' });
    expect(setAsideFiles()).toHaveLength(2);
  });

  it('T9: with an encryption key, no secret appears in the file bytes (without one they do, as documented)', async () => {
    const state = makeTokenState('bytes');
    const secrets = [state.accessToken.reveal(), state.refreshToken?.reveal() ?? ''];

    const encrypted = openStore({ key });
    await encrypted.save('acct', state);
    const encryptedBytes = fs.readFileSync(file);
    for (const secret of secrets) expect(encryptedBytes.includes(secret)).toBe(false);
    expect(encryptedBytes.toString('utf8')).toContain('"enc:v1:');
    await encrypted.close();
    fs.rmSync(file);

    const plain = openStore();
    await plain.save('acct', state);
    const plainBytes = fs.readFileSync(file);
    for (const secret of secrets) expect(plainBytes.includes(secret)).toBe(true);
    await plain.close();
  });

  it('T9: an existing 0644 state file is tightened to 0600, with one warning', async () => {
    const writer = openStore();
    await writer.save('acct', makeTokenState('perm'));
    await writer.close();
    fs.chmodSync(file, 0o644);

    const capture = captureLogger();
    const store = openStore({ logger: capture.logger });
    expect((await store.load('acct'))?.revision).toBe(1);
    expect(modeOf(file)).toBe(0o600);
    fs.chmodSync(file, 0o640);
    await store.load('acct');
    expect(modeOf(file)).toBe(0o600);
    const warnings = capture.lines().filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ path: file, mode: '0644' });
    await store.close();
  });

  it('T9: a missing directory is created and the file is still 0600', async () => {
    file = path.join(dir, 'nested', 'deeper', 'state.json');
    const store = openStore();
    await store.save('acct', makeTokenState('nested'));
    expect(modeOf(file)).toBe(0o600);
    expect(modeOf(path.dirname(file)) & 0o077).toBe(0);
    await store.close();
  });

  it('an account named __proto__ is stored like any other', async () => {
    const store = openStore();
    const state = makeTokenState('proto');
    await store.save('__proto__', state);
    await store.save('other', makeTokenState('other'));
    const loaded = await openStore().load('__proto__');
    expect(loaded?.state.accessToken.reveal()).toBe(state.accessToken.reveal());
    await store.close();
  });
});

describe('TokenCodec', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function keyFile(content: Buffer | string): string {
    const target = path.join(dir, `key-${fs.readdirSync(dir).length}`);
    fs.writeFileSync(target, content, { mode: 0o600 });
    return target;
  }

  function decodeError(codec: TokenCodec, value: unknown, account = 'acct'): StoreFormatError {
    try {
      codec.decode(account, value);
    } catch (error) {
      if (error instanceof StoreFormatError) return error;
      throw error;
    }
    throw new Error('decode did not throw');
  }

  const record = { state: makeTokenState('codec'), revision: 3 };
  const secrets = [record.state.accessToken.reveal(), record.state.refreshToken?.reveal() ?? ''];
  it('reads a key file as 32 raw bytes, 64 hex characters or base64, trailing CR/LF ignored; all give the same key', () => {
    const key = randomBytes(32);
    const codecs = [
      TokenCodec.fromKeyFile(keyFile(key)),
      TokenCodec.fromKeyFile(keyFile(`${key.toString('hex')}\n`)),
      TokenCodec.fromKeyFile(keyFile(`${key.toString('hex').toUpperCase()}\r\n`)),
      TokenCodec.fromKeyFile(keyFile(`${key.toString('base64')}\n`)),
      TokenCodec.fromKeyFile(keyFile(key.toString('base64url'))),
    ];
    const encoded = new TokenCodec(key).encode('acct', record);
    for (const codec of codecs) expect(codec.decode('acct', encoded).state.accessToken.reveal()).toBe(secrets[0]);
  });

  it('a raw 32-byte key ending in a newline byte is used whole', () => {
    const key = Buffer.concat([randomBytes(31), Buffer.from('\n')]);
    const encoded = new TokenCodec(key).encode('acct', record);
    expect(TokenCodec.fromKeyFile(keyFile(key)).decode('acct', encoded).revision).toBe(3);
  });

  it('a key file of another shape is refused with a message naming the file, never the key', () => {
    const shortKey = randomBytes(16).toString('hex');
    const target = keyFile(`${shortKey}\n`);
    expect(() => TokenCodec.fromKeyFile(target)).toThrow(target);
    expect(() => TokenCodec.fromKeyFile(target)).toThrow(/64 hex characters/);
    try {
      TokenCodec.fromKeyFile(target);
    } catch (error) {
      expect(String(error)).not.toContain(shortKey);
    }
    expect(() => TokenCodec.fromKeyFile(path.join(dir, 'missing'))).toThrow(/missing.*ENOENT/);
    expect(() => new TokenCodec(randomBytes(16))).toThrow(/32 bytes/);
  });

  it('encrypts each secret with a fresh IV; the record otherwise stays readable', () => {
    const codec = new TokenCodec(randomBytes(32));
    const one = codec.encode('acct', record, START);
    const two = codec.encode('acct', record, START);
    expect(one.accessToken).toMatch(/^enc:v1:[\w-]+:[\w-]+:[\w-]+$/);
    expect(one.accessToken).not.toBe(two.accessToken);
    expect(one).toMatchObject({
      format: STORE_FORMAT,
      revision: 3,
      expiresAt: record.state.expiresAt,
      updatedAt: new Date(START).toISOString(),
    });
    for (const secret of secrets) expect(JSON.stringify(one)).not.toContain(secret);
  });

  it('an encrypted value moved to the other field is refused (the field name is authenticated)', () => {
    const codec = new TokenCodec(randomBytes(32));
    const encoded = codec.encode('acct', record);
    const swapped = { ...encoded, accessToken: encoded.refreshToken, refreshToken: encoded.accessToken };
    expect(decodeError(codec, swapped).reason).toBe('wrong_key');
  });

  it('refuses foreign formats, missing fields and mangled ciphertext with a reason and no secret in the message', () => {
    const plain = new TokenCodec();
    const keyed = new TokenCodec(randomBytes(32));
    const plainRecord = plain.encode('acct', record);
    const keyedRecord = keyed.encode('acct', record);
    const cases: Array<[TokenCodec, unknown, string]> = [
      [plain, 'a string', 'not_an_object'],
      [plain, { ...plainRecord, format: 'bearer-sidecar/token-v2' }, 'foreign_format'],
      [plain, { ...plainRecord, revision: 0 }, 'missing_field'],
      [plain, { ...plainRecord, accessToken: undefined }, 'missing_field'],
      [plain, { ...plainRecord, lifetimeMs: 'soon' }, 'missing_field'],
      [plain, keyedRecord, 'encrypted_without_key'],
      [keyed, plainRecord, 'plaintext_with_key'],
      [keyed, { ...keyedRecord, accessToken: 'enc:v1:not:base64!:x' }, 'malformed_ciphertext'],
      [keyed, { ...keyedRecord, accessToken: mangled(keyedRecord.accessToken) }, 'wrong_key'],
      [new TokenCodec(randomBytes(32)), keyedRecord, 'wrong_key'],
    ];
    for (const [codec, value, reason] of cases) {
      const error = decodeError(codec, value);
      expect(error.reason).toBe(reason);
      for (const secret of secrets) expect(error.message).not.toContain(secret);
    }
  });

  describe('T9 persistence', () => {
    it('T9: an encrypted record moved to another account is refused (the account name is authenticated)', () => {
      const codec = new TokenCodec(randomBytes(32));
      const encoded = codec.encode('acct', record);
      expect(codec.decode('acct', encoded).revision).toBe(3);
      expect(decodeError(codec, encoded, 'other-account').reason).toBe('wrong_key');
    });
  });
});

describe('R5 FileTokenStore: the state file is untrusted input', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = tempDir();
    file = path.join(dir, 'state.json');
  });

  afterEach(() => {
    vi.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Counts the bytes read through any FileHandle from now on (read and readFile); restored after the test. */
  async function countFileHandleReads(): Promise<() => number> {
    const probe = await fs.promises.open(dir, 'r');
    type Reads = {
      read: (...args: unknown[]) => Promise<{ bytesRead: number }>;
      readFile: (...args: unknown[]) => Promise<string | Buffer>;
    };
    const prototype = Object.getPrototypeOf(probe) as Reads;
    await probe.close();
    const { read: originalRead, readFile: originalReadFile } = prototype;
    let total = 0;
    vi.spyOn(prototype, 'read').mockImplementation(async function (this: unknown, ...args: unknown[]) {
      const result = await originalRead.apply(this, args);
      total += result.bytesRead;
      return result;
    });
    vi.spyOn(prototype, 'readFile').mockImplementation(async function (this: unknown, ...args: unknown[]) {
      const result = await originalReadFile.apply(this, args);
      total += Buffer.byteLength(result);
      return result;
    });
    return () => total;
  }

  function openStore(logger = silentLogger()): FileTokenStore {
    return new FileTokenStore({ path: file, codec: new TokenCodec(), logger, now: () => START });
  }

  /** Releases a reader blocked in open() on a FIFO (the code before R5), so a failing test cannot wedge the worker. */
  function releaseFifoReaders(fifo: string): void {
    try {
      fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
    } catch {
      // ENXIO: nobody is waiting to read, which is what a passing test leaves behind.
    }
  }

  it('R5: a FIFO at store.path is a clear error naming the path, and loading never blocks', async () => {
    execFileSync('mkfifo', [file]);
    const store = openStore();
    try {
      await expect(store.load('acct')).rejects.toThrow(`${file} is a FIFO, not a regular file`);
      // A save re-reads the file first: refused the same way, and the FIFO is left in place.
      await expect(store.save('acct', makeTokenState('fifo'))).rejects.toThrow(/is a FIFO, not a regular file/);
      expect(fs.lstatSync(file).isFIFO()).toBe(true);
    } finally {
      releaseFifoReaders(file);
      await store.close().catch(() => undefined);
    }
  });

  it('R5: a directory or a socket at store.path is a clear error naming the path', async () => {
    fs.mkdirSync(file);
    await expect(openStore().load('acct')).rejects.toThrow(`${file} is a directory, not a regular file`);
    fs.rmdirSync(file);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(file, resolve));
    try {
      await expect(openStore().load('acct')).rejects.toThrow(`${file} is a socket, not a regular file`);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('R5: a symlink at store.path is refused: the file it points to is never chmod-ed, written or renamed', async () => {
    const other = path.join(dir, 'someone-elses-file');
    const content = 'a file of the same user, readable by the group\n';
    fs.writeFileSync(other, content, { mode: 0o644 });
    fs.chmodSync(other, 0o644);
    fs.symlinkSync(other, file);
    const store = openStore();

    await expect(store.load('acct')).rejects.toThrow(`${file} is a symbolic link`);
    await expect(store.save('acct', makeTokenState('link'))).rejects.toThrow(`${file} is a symbolic link`);

    expect(fs.statSync(other).mode & 0o777).toBe(0o644);
    expect(fs.readFileSync(other, 'utf8')).toBe(content);
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(['someone-elses-file', 'state.json']);
    await store.close();
  });

  it('R5: a 300 MiB state file is set aside as too_large, reading at most 4 MiB + 1 byte of it', async () => {
    // Sparse: 300 MiB long, no disk used. Valid JSON up front: only its size is wrong.
    fs.writeFileSync(file, JSON.stringify({ format: STATE_FILE_FORMAT, accounts: {} }), { mode: 0o600 });
    fs.truncateSync(file, 300 * 1024 * 1024);
    const capture = captureLogger();
    const store = openStore(capture.logger);
    const bytesRead = await countFileHandleReads();

    expect(await store.load('acct')).toBeUndefined();

    expect(bytesRead()).toBeLessThanOrEqual(4 * 1024 * 1024 + 1);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(dir).filter((name) => name.startsWith('state.json.corrupt-'))).toHaveLength(1);
    const errors = capture.lines().filter((line) => line.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ reason: 'too_large', path: file });
    expect((await store.save('acct', makeTokenState('after'))).saved).toBe(true);
    await store.close();
  });

  it('R5: a state file of exactly 4 MiB is still read', async () => {
    const document = JSON.stringify({ format: STATE_FILE_FORMAT, accounts: {} });
    fs.writeFileSync(file, document.padEnd(4 * 1024 * 1024, ' '), { mode: 0o600 });
    expect(await openStore().load('acct')).toBeUndefined();
    expect(fs.existsSync(file)).toBe(true);
  });
});

/** The ciphertext with its last two characters changed (never to what they already were). */
function mangled(ciphertext: string): string {
  const tail = ciphertext.endsWith('AA') ? 'BB' : 'AA';
  return `${ciphertext.slice(0, -2)}${tail}`;
}
