import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { lstat, open, stat, type FileHandle } from 'node:fs/promises';
import { SidecarError, errnoOf } from './errors.js';

/*
 * R5: every file the sidecar reads (state file, secrets, keys, certificates, CAs, its config) is
 * untrusted. Only regular files are read, the type is checked on the opened descriptor (no race
 * between a check and the read), the open never blocks (O_NONBLOCK: a FIFO without a writer would
 * otherwise hang open() forever), and no more than the limit + 1 byte is ever read.
 */

export const KIB = 1024;
export const MIB = 1024 * KIB;

/** R5 limits, in bytes. */
export const FILE_LIMITS = {
  /** The token state file of the `file` store. */
  stateFile: 4 * MIB,
  /** Secret files (passwords, client secrets, refresh tokens), key and certificate files, CA files. */
  secretOrKey: 1 * MIB,
  /** The YAML/JSON configuration file. */
  config: 1 * MIB,
} as const;

export interface ReadRegularFileOptions {
  /** Largest size accepted, in bytes; a larger file is refused (reason `too_large`). */
  maxBytes: number;
  /** When false, a symbolic link at `path` itself is refused (reason `symlink`). Default true. */
  followSymlinks?: boolean;
}

/** Stable, greppable: why a file was not read. */
export type UnsafeFileReason = 'missing' | 'unreadable' | 'not_regular' | 'symlink' | 'too_large' | 'pipe_timeout';

/** A file that was not read, and why. The message names the path and never quotes the content. */
export class UnsafeFileError extends SidecarError {
  constructor(
    readonly reason: UnsafeFileReason,
    readonly path: string,
    message: string,
    /** The errno code for `missing` and `unreadable` (ENOENT, EACCES, ...). */
    readonly errno?: string,
  ) {
    super('BS_ERR_UNSAFE_FILE', message);
  }
}

/** A regular file opened for reading, with the type and size as seen on the descriptor. */
export interface OpenedFile {
  handle: FileHandle;
  stats: Stats;
  path: string;
}

/**
 * Reads a regular file whole, at most `maxBytes` bytes (R5). Follows a symlink unless
 * `followSymlinks` is false. Throws UnsafeFileError: `missing`, `unreadable`, `not_regular`
 * (FIFO, socket, device, directory: refused at once, never blocks), `symlink`, `too_large`.
 */
export async function readRegularFile(path: string, options: ReadRegularFileOptions): Promise<Buffer> {
  const opened = await openRegularFile(path, options);
  try {
    return await readOpenedFile(opened, options.maxBytes);
  } finally {
    await opened.handle.close();
  }
}

/** The same rule as readRegularFile, synchronously: for config-time checks and start-up reads. */
export function readRegularFileSync(path: string, options: ReadRegularFileOptions): Buffer {
  const fd = openWithoutBlockingSync(path, options);
  try {
    const stats = fstatSync(fd);
    checkRegular(stats, path);
    return readRegularFdSync(fd, stats, path, options.maxBytes);
  } finally {
    closeSync(fd);
  }
}

/** What readFileOrPipeSync read, and from what. */
export interface FileOrPipeContent {
  bytes: Buffer;
  /** True when it came from a FIFO or pipe: it cannot be read a second time. */
  pipe: boolean;
}

/**
 * readRegularFileSync, except that a FIFO or pipe (`<(printf s3cret)`, `/dev/stdin`) is read too:
 * until its writer closes it, at most `maxBytes`, waiting at most `pipeWaitMs` for the writer
 * (a FIFO nobody writes to never blocks for longer). For secrets given once at start-up (R5, R6).
 * Throws UnsafeFileError; `pipe_timeout` when the writer did not finish in time.
 */
export function readFileOrPipeSync(
  path: string,
  options: ReadRegularFileOptions & { pipeWaitMs: number },
): FileOrPipeContent {
  const fd = openWithoutBlockingSync(path, options);
  try {
    const stats = fstatSync(fd);
    if (stats.isFIFO()) return { bytes: readPipeFdSync(fd, path, options.maxBytes, options.pipeWaitMs), pipe: true };
    checkRegular(stats, path);
    return { bytes: readRegularFdSync(fd, stats, path, options.maxBytes), pipe: false };
  } finally {
    closeSync(fd);
  }
}

function openWithoutBlockingSync(path: string, options: Pick<ReadRegularFileOptions, 'followSymlinks'>): number {
  try {
    return openSync(path, openFlags(options));
  } catch (error) {
    throw refusalOfOpen(error, path, namedByType(error) ? pathStatsSync(path, options) : undefined);
  }
}

function readRegularFdSync(fd: number, stats: Stats, path: string, maxBytes: number): Buffer {
  checkSize(stats.size, path, maxBytes);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(chunkSize(maxBytes, total));
    const bytesRead = readSync(fd, chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    total += bytesRead;
    // The file may have grown since fstat: never hold more than the limit + 1 byte.
    checkSize(total, path, maxBytes);
  }
  return Buffer.concat(chunks, total);
}

const PIPE_POLL_MS = 10;

/**
 * Reads a FIFO opened with O_NONBLOCK until its writer closes it. End of file before any byte may
 * only mean that the writer has not opened it yet, so it is polled until the deadline.
 */
function readPipeFdSync(fd: number, path: string, maxBytes: number, waitMs: number): Buffer {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const deadline = performance.now() + waitMs;
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(chunkSize(maxBytes, total));
    let bytesRead: number | undefined;
    try {
      bytesRead = readSync(fd, chunk, 0, chunk.length, null);
    } catch (error) {
      // EAGAIN: a writer holds the pipe open and has not written (all) yet.
      if (errnoCode(error) !== 'EAGAIN')
        throw new UnsafeFileError('unreadable', path, `cannot read ${path} (${errnoCode(error)})`, errnoCode(error));
    }
    if (bytesRead !== undefined && bytesRead > 0) {
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
      checkSize(total, path, maxBytes);
      continue;
    }
    if (bytesRead === 0 && total > 0) return Buffer.concat(chunks, total);
    if (performance.now() >= deadline) {
      const waited = formatSeconds(waitMs);
      const message =
        total === 0
          ? `${path} is a FIFO and nothing was written to it within ${waited}`
          : `${path} is a FIFO whose writer did not close it within ${waited}`;
      throw new UnsafeFileError('pipe_timeout', path, message);
    }
    // Start-up only, bounded by the deadline: a synchronous pause between polls.
    Atomics.wait(sleeper, 0, 0, PIPE_POLL_MS);
  }
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/**
 * Opens `path` for reading without blocking and checks, on the descriptor, that it is a regular
 * file. The caller reads with readOpenedFile and closes the handle. Throws UnsafeFileError.
 */
export async function openRegularFile(
  path: string,
  options: Pick<ReadRegularFileOptions, 'followSymlinks'>,
): Promise<OpenedFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, openFlags(options));
  } catch (error) {
    throw refusalOfOpen(error, path, namedByType(error) ? await pathStats(path, options) : undefined);
  }
  try {
    const stats = await handle.stat();
    checkRegular(stats, path);
    return { handle, stats, path };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Reads an opened regular file, at most `maxBytes` bytes (else UnsafeFileError `too_large`). */
export async function readOpenedFile(opened: OpenedFile, maxBytes: number): Promise<Buffer> {
  checkSize(opened.stats.size, opened.path, maxBytes);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(chunkSize(maxBytes, total));
    const { bytesRead } = await opened.handle.read(chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    total += bytesRead;
    checkSize(total, opened.path, maxBytes);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Writes `data` to a regular file (created with `mode`, or an existing one truncated and set to
 * `mode`), then fsyncs it. Never through a symlink (the file it points to is not ours to change),
 * never blocking on a FIFO without a reader. Throws UnsafeFileError (R5).
 */
export async function writeRegularFile(path: string, data: string, options: { mode: number }): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(
      path,
      constants.O_WRONLY | constants.O_CREAT | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0),
      options.mode,
    );
  } catch (error) {
    throw refusalOfOpen(
      error,
      path,
      namedByType(error) ? await pathStats(path, { followSymlinks: false }) : undefined,
      'write',
    );
  }
  try {
    checkRegular(await handle.stat(), path);
    // An existing file keeps its mode on open: set it before any byte is written.
    await handle.chmod(options.mode);
    await handle.truncate(0);
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Throws UnsafeFileError unless writeRegularFile could write `path`: nothing there yet, or a
 * regular file (not a symlink). For refusing a bad target before work that cannot be redone.
 */
export function checkWritableTarget(path: string): void {
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch {
    return; // Nothing there (or nothing we can see): the write will tell.
  }
  if (!stats.isFile()) throw notRegular(stats, path);
}

/** `a FIFO`, `a directory`, ...: what a file is, for messages. */
export function describeFileType(stats: Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** `4 MiB`, `1 KiB`, `100 bytes`. */
export function formatBytes(bytes: number): string {
  if (bytes >= MIB && bytes % MIB === 0) return `${bytes / MIB} MiB`;
  if (bytes >= KIB && bytes % KIB === 0) return `${bytes / KIB} KiB`;
  return `${bytes} bytes`;
}

const READ_CHUNK = 64 * KIB;

/** Reads in chunks of at most 64 KiB, and never past the limit + 1 byte. */
function chunkSize(maxBytes: number, alreadyRead: number): number {
  return Math.max(1, Math.min(READ_CHUNK, maxBytes + 1 - alreadyRead));
}

function openFlags(options: Pick<ReadRegularFileOptions, 'followSymlinks'>): number {
  // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
  // Both are 0 where the platform lacks them (Windows has neither FIFOs nor these flags).
  const noFollow = options.followSymlinks === false ? (constants.O_NOFOLLOW ?? 0) : 0;
  return constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | noFollow;
}

function checkRegular(stats: Stats, path: string): void {
  if (!stats.isFile()) throw notRegular(stats, path);
}

function checkSize(size: number, path: string, maxBytes: number): void {
  if (size > maxBytes) throw new UnsafeFileError('too_large', path, `${path} is larger than ${formatBytes(maxBytes)}`);
}

function notRegular(stats: Stats, path: string): UnsafeFileError {
  if (stats.isSymbolicLink()) {
    return new UnsafeFileError(
      'symlink',
      path,
      `${path} is a symbolic link; it is not followed here: point the setting at the file itself`,
    );
  }
  return new UnsafeFileError('not_regular', path, `${path} is ${describeFileType(stats)}, not a regular file`);
}

/** Open errors that mean "not a file you can open like this": explained by what is at the path. */
function namedByType(error: unknown): boolean {
  // ENXIO: a socket; ELOOP: a symlink under O_NOFOLLOW; EISDIR: a directory on some platforms.
  return ['ENXIO', 'ELOOP', 'EISDIR'].includes(errnoCode(error));
}

/** What is at `path` (the link itself when links are not followed), for explaining a failed open. */
function pathStatsSync(path: string, options: Pick<ReadRegularFileOptions, 'followSymlinks'>): Stats | undefined {
  try {
    return options.followSymlinks === false ? lstatSync(path) : statSync(path);
  } catch {
    return undefined;
  }
}

async function pathStats(
  path: string,
  options: Pick<ReadRegularFileOptions, 'followSymlinks'>,
): Promise<Stats | undefined> {
  try {
    return options.followSymlinks === false ? await lstat(path) : await stat(path);
  } catch {
    return undefined;
  }
}

/** Turns a failed open into UnsafeFileError; `found` is what is at the path, when namedByType. */
function refusalOfOpen(
  error: unknown,
  path: string,
  found: Stats | undefined,
  verb: 'read' | 'write' = 'read',
): UnsafeFileError {
  const code = errnoCode(error);
  if (code === 'ENOENT') return new UnsafeFileError('missing', path, `cannot ${verb} ${path} (ENOENT)`, code);
  if (found !== undefined && !found.isFile()) return notRegular(found, path);
  return new UnsafeFileError('unreadable', path, `cannot ${verb} ${path} (${code})`, code);
}

function errnoCode(error: unknown): string {
  return errnoOf(error) ?? 'error';
}
