import type { Logger } from './logger.js';
import { FILE_LIMITS, readFileOrPipeSync, readRegularFile } from './safe-file.js';
import { Secret } from './secret.js';
import { SidecarError, messageOf } from './errors.js';

/** How long start-up waits for the writer of a secret given as a pipe (`<(printf s3cret)`). */
export const SECRET_PIPE_WAIT_MS = 2_000;

/** A secret file that holds nothing once trailing CR/LF are removed (R6): never sent. */
export class EmptySecretError extends SidecarError {
  constructor(readonly path: string) {
    super('BS_ERR_EMPTY_SECRET', `${path} is empty`);
  }
}

/** What a secret file's reader reports; the problem text names the path, never the secret. */
export type SecretReadEvent =
  /** A read failed and the last good value was used instead. `first` is true once per run of failures. */
  | { type: 'failed'; path: string; problem: string; first: boolean }
  /** The file reads well again after failures. */
  | { type: 'recovered'; path: string };

export type SecretReadListener = (event: SecretReadEvent) => void;

/** §8: only trailing CR/LF go; an empty remainder is refused (R6). */
function secretFromText(text: string, path: string): Secret {
  const value = text.replace(/[\r\n]+$/, '');
  if (value === '') throw new EmptySecretError(path);
  return new Secret(value);
}

/**
 * Reads a secret file at start-up (config time), synchronously: a regular file (symlinks
 * followed) or a pipe, at most 1 MiB, not empty. Throws UnsafeFileError or EmptySecretError,
 * whose messages name the path (R5, R6).
 */
export function readSecretFileAtStart(path: string): { secret: Secret; pipe: boolean } {
  const { bytes, pipe } = readFileOrPipeSync(path, {
    maxBytes: FILE_LIMITS.secretOrKey,
    pipeWaitMs: SECRET_PIPE_WAIT_MS,
  });
  return { secret: secretFromText(bytes.toString('utf8'), path), pipe };
}

/**
 * Reads a secret file now: a regular file (symlinks followed), at most 1 MiB, not empty.
 * Throws UnsafeFileError or EmptySecretError (R5, R6).
 */
export async function readSecretFile(path: string): Promise<Secret> {
  return secretFromText((await readRegularFile(path, { maxBytes: FILE_LIMITS.secretOrKey })).toString('utf8'), path);
}

/**
 * One secret file, read again at every use (§3: a rotated Kubernetes Secret takes effect without
 * a restart). R6: a read that fails, finds the file empty or fails `check` returns the last good value instead,
 * and tells its listeners (once per run of failures as `first`, every time for counting); with no
 * good value yet, the error is thrown (a rejected login, §8). A pipe is read once, at start-up.
 */
export class SecretFile {
  readonly kind = 'file';
  readonly path: string;
  /** True when the secret came from a pipe: it is never read again. */
  readonly pipe: boolean;
  #lastGood: Secret | undefined;
  #failing = false;
  readonly #listeners = new Set<SecretReadListener>();

  readonly #check: ((secret: Secret) => void) | undefined;

  /**
   * `initial`: the value read at start-up (readSecretFileAtStart), if any. `check`: throws when a
   * value read is not usable (a key file that is not a key); such a value is a failed read (R6).
   */
  constructor(path: string, initial?: { secret: Secret; pipe: boolean }, check?: (secret: Secret) => void) {
    this.path = path;
    this.#lastGood = initial?.secret;
    this.pipe = initial?.pipe ?? false;
    this.#check = check;
  }

  async read(): Promise<Secret> {
    if (this.pipe && this.#lastGood !== undefined) return this.#lastGood;
    let secret: Secret;
    try {
      secret = await readSecretFile(this.path);
      this.#check?.(secret);
    } catch (error) {
      const lastGood = this.#lastGood;
      if (lastGood === undefined) throw error;
      const first = !this.#failing;
      this.#failing = true;
      this.#emit({ type: 'failed', path: this.path, problem: messageOf(error), first });
      return lastGood;
    }
    this.#lastGood = secret;
    if (this.#failing) {
      this.#failing = false;
      this.#emit({ type: 'recovered', path: this.path });
    }
    return secret;
  }

  /** Adds a listener for read failures and recoveries; returns its removal. */
  watch(listener: SecretReadListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: SecretReadEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

/**
 * R6: reports a secret file's reads (or a client certificate's, E2) on `logger` (the account's): one warning per run of failures,
 * an info line when it reads well again, and `countFailure()` for every failed read (the metric).
 * Returns the removal of the listener.
 */
export function reportSecretReads(
  file: Pick<SecretFile, 'path' | 'pipe' | 'watch'>,
  options: { logger: Logger; countFailure: () => void },
): () => void {
  const { logger, countFailure } = options;
  if (file.pipe)
    logger.info({ path: file.path }, 'secret file is a pipe: read once at start-up and kept, never read again');
  return file.watch((event) => {
    if (event.type === 'recovered') {
      logger.info({ path: event.path }, 'secret file reads well again');
      return;
    }
    countFailure();
    if (event.first)
      logger.warn(
        { path: event.path, problem: event.problem },
        'secret file cannot be used: keeping its last good value until it reads well again',
      );
  });
}
