import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../util/logger.js';
import {
  FILE_LIMITS,
  formatBytes,
  openRegularFile,
  readOpenedFile,
  UnsafeFileError,
  type OpenedFile,
} from '../util/safe-file.js';
import { describeFormat, StoreFormatError, type TokenCodec } from './codec.js';
import { LocalLocks } from './local-lock.js';
import {
  nextRevision,
  type SaveResult,
  type StoredToken,
  type StoreLock,
  type TokenState,
  type TokenStore,
} from './types.js';
import { SidecarError, errnoOf } from '../util/errors.js';

/** The version tag of the whole state file; each account inside carries the codec's own tag. */
export const STATE_FILE_FORMAT = 'bearer-sidecar/state-v1';

const FILE_MODE = 0o600;

/** R5: why a state file that is a symlink is refused (the same words at config time and at run time). */
export function stateFileIsSymlink(path: string): string {
  return `${path} is a symbolic link: the state file is never read, written or chmod-ed through a link; set store.path to the file itself`;
}

export interface FileTokenStoreOptions {
  path: string;
  codec: TokenCodec;
  logger: Logger;
  /** The lock clock (and the time stamped on records and set-aside files). */
  now?: () => number;
}

/** An account as read from the file: the record as stored (written back untouched) and decoded. */
interface Entry {
  raw: unknown;
  record: StoredToken;
}

/**
 * Token state in one JSON file, so a restarted process goes on with its tokens (T9).
 *
 * For ONE process: locks live in this process (LocalLocks) and nothing tells it when another
 * process writes the file. Replicas that share tokens use the `redis` store instead.
 *
 * Every operation runs in one promise queue and re-reads the file, so two accounts saving at
 * once never lose each other's update and a compare-and-set compares with what is on disk.
 */
export class FileTokenStore implements TokenStore {
  readonly type = 'file';
  readonly shared = false;
  readonly #path: string;
  readonly #codec: TokenCodec;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #locks: LocalLocks;
  #queue: Promise<unknown> = Promise.resolve();
  #warnedAboutMode = false;

  constructor(options: FileTokenStoreOptions) {
    this.#path = options.path;
    this.#codec = options.codec;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#locks = new LocalLocks(this.#now);
  }

  /** A missing file is empty state; an unusable one is set aside and reported, never thrown. */
  async load(account: string): Promise<StoredToken | undefined> {
    return this.#serialised(async () => (await this.#readEntries()).get(account)?.record);
  }

  async save(
    account: string,
    state: TokenState,
    expectedRevision?: number | null,
    lastKnownRevision = 0,
  ): Promise<SaveResult> {
    return this.#serialised(async () => {
      const entries = await this.#readEntries();
      const current = entries.get(account)?.record;
      if (expectedRevision !== undefined && (current?.revision ?? null) !== expectedRevision) {
        return { saved: false, current };
      }
      const record: StoredToken = { state: { ...state }, revision: nextRevision(current?.revision, lastKnownRevision) };
      entries.set(account, { raw: this.#codec.encode(account, record, this.#now()), record });
      await this.#writeEntries(entries);
      return { saved: true, record: { state: { ...state }, revision: record.revision } };
    });
  }

  async obtainLock(account: string, ttlMs: number): Promise<StoreLock | undefined> {
    return this.#locks.obtain(account, ttlMs);
  }

  subscribe(): () => void {
    // One process writes the file (see the class comment): nobody else's saves to announce.
    return () => undefined;
  }

  /** Resolves once every queued write is on disk. */
  async close(): Promise<void> {
    await this.#queue;
  }

  /** Runs `task` after every earlier operation; its outcome (or error) goes to its own caller. */
  #serialised<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    // The queue only orders operations; each failure is already delivered through `run`.
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #readEntries(): Promise<Map<string, Entry>> {
    try {
      const text = await this.#readText();
      return text === undefined ? new Map() : this.#parse(text);
    } catch (error) {
      if (!(error instanceof StoreFormatError)) throw error;
      await this.#setAside(error);
      return new Map();
    }
  }

  /**
   * R5: only a regular file is read, never through a symlink (a chmod or a write would then land
   * on whatever the link points to), never blocking (a FIFO), and never more than 4 MiB of it.
   */
  async #readText(): Promise<string | undefined> {
    let opened: OpenedFile;
    try {
      opened = await openRegularFile(this.#path, { followSymlinks: false });
    } catch (error) {
      if (error instanceof UnsafeFileError && error.reason === 'missing') return undefined;
      throw this.#refusal(error);
    }
    try {
      if ((opened.stats.mode & 0o077) !== 0) await this.#tighten(opened.handle, opened.stats.mode);
      return (await readOpenedFile(opened, FILE_LIMITS.stateFile)).toString('utf8');
    } catch (error) {
      if (error instanceof UnsafeFileError && error.reason === 'too_large') {
        throw new StoreFormatError(
          'too_large',
          `token state file is larger than ${formatBytes(FILE_LIMITS.stateFile)}`,
        );
      }
      throw error;
    } finally {
      await opened.handle.close();
    }
  }

  /** A state file that is not a regular file is not set aside (it may not even be ours): refused, naming the path. */
  #refusal(error: unknown): unknown {
    if (!(error instanceof UnsafeFileError)) return error;
    const message =
      error.reason === 'symlink'
        ? `token state file ${stateFileIsSymlink(this.#path)}`
        : `token state file ${error.message}`;
    return new UnsafeFileError(error.reason, this.#path, message, error.errno);
  }

  /** T9: the file holds tokens, so nobody but its owner may read it. */
  async #tighten(handle: FileHandle, mode: number): Promise<void> {
    const was = (mode & 0o777).toString(8).padStart(4, '0');
    try {
      await handle.chmod(FILE_MODE);
    } catch (error) {
      // Not fatal: the next save replaces the file with a 0600 one.
      this.#logger.warn(
        { path: this.#path, mode: was, code: errorCode(error) },
        'token state file is readable by others and could not be changed to 0600',
      );
      return;
    }
    if (this.#warnedAboutMode) return;
    this.#warnedAboutMode = true;
    this.#logger.warn(
      { path: this.#path, mode: was },
      'token state file was readable by others: permissions changed to 0600',
    );
  }

  #parse(text: string): Map<string, Entry> {
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch {
      // The parser's own message quotes the file's content, which may hold a token.
      throw new StoreFormatError('not_json', 'token state file is not valid JSON');
    }
    if (!isObject(document)) throw new StoreFormatError('not_an_object', 'token state file is not a JSON object');
    if (document.format !== STATE_FILE_FORMAT) {
      throw new StoreFormatError(
        'foreign_format',
        `token state file has format ${describeFormat(document.format)}, expected "${STATE_FILE_FORMAT}"`,
      );
    }
    const accounts = document.accounts;
    if (!isObject(accounts)) throw new StoreFormatError('missing_field', 'token state file has no "accounts" object');
    const entries = new Map<string, Entry>();
    for (const [account, raw] of Object.entries(accounts)) {
      try {
        entries.set(account, { raw, record: this.#codec.decode(account, raw) });
      } catch (error) {
        if (!(error instanceof StoreFormatError)) throw error;
        throw new StoreFormatError(error.reason, `account ${JSON.stringify(account.slice(0, 80))}: ${error.message}`);
      }
    }
    return entries;
  }

  /** Keeps an unusable file for a person to inspect: renamed, never deleted or overwritten. */
  async #setAside(problem: StoreFormatError): Promise<void> {
    const stamp = new Date(this.#now()).toISOString().replace(/:/g, '-');
    let target = `${this.#path}.corrupt-${stamp}`;
    for (let n = 1; await exists(target); n++) target = `${this.#path}.corrupt-${stamp}-${n}`;
    try {
      await rename(this.#path, target);
    } catch (error) {
      // Starting empty would let the next save overwrite the only copy: refuse instead.
      throw new SidecarError(
        'BS_ERR_STATE_FILE',
        `token state file ${this.#path} cannot be used (${problem.reason}) and could not be set aside (${errorCode(error)})`,
        { cause: error },
      );
    }
    await syncDirectory(dirname(this.#path));
    this.#logger.error(
      { path: this.#path, setAsideAs: target, reason: problem.reason, problem: problem.message },
      'token state file cannot be used: set aside, starting with empty state (accounts without a stored token log in again)',
    );
  }

  /** T9: temp file created 0600 (no window), written, fsynced, renamed over the target, directory fsynced. */
  async #writeEntries(entries: Map<string, Entry>): Promise<void> {
    // fromEntries defines own properties, so an account named "__proto__" stays an account.
    const accounts = Object.fromEntries(
      [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, entry]) => [name, entry.raw]),
    );
    const text = `${JSON.stringify({ format: STATE_FILE_FORMAT, accounts }, null, 2)}\n`;
    const directory = dirname(this.#path);
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const temporary = join(directory, `.${basename(this.#path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(temporary, 'wx', FILE_MODE);
    try {
      try {
        // The umask may have narrowed the mode (never widened it); make it exactly 0600.
        await handle.chmod(FILE_MODE);
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.#path);
    } catch (error) {
      await unlink(temporary).catch((cleanupError: unknown) => {
        this.#logger.warn(
          { path: temporary, code: errorCode(cleanupError) },
          'could not remove a temporary token state file',
        );
      });
      throw error;
    }
    await syncDirectory(directory);
  }
}

/** Makes a rename durable; some platforms and filesystems cannot fsync a directory at all. */
async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(directory, 'r');
  } catch (error) {
    if (hasErrno(error, 'EISDIR', 'EPERM', 'EACCES')) return; // Windows: directories cannot be opened
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    if (!hasErrno(error, 'EINVAL', 'EPERM', 'EISDIR', 'ENOTSUP')) throw error; // the rename itself is still atomic
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (hasErrno(error, 'ENOENT')) return false;
    throw error;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorCode(error: unknown): string {
  return errnoOf(error) ?? String(error);
}

function hasErrno(error: unknown, ...codes: string[]): boolean {
  return codes.includes(errnoOf(error) ?? '');
}
