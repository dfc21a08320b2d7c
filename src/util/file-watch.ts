import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { FILE_LIMITS, readRegularFileSync } from './safe-file.js';

/** How long a burst of events (an editor's several writes, a symlink swap's steps) may last before the file is read. */
export const WATCH_DEBOUNCE_MS = 200;

export interface ContentWatchOptions {
  /** Called once per burst of events in which the file's content changed. */
  onChange: () => void;
  /** A watcher failure (the directory went away, too many watches); watching stops. */
  onError: (error: Error) => void;
  debounceMs?: number;
}

/**
 * H2: watches a file's content, however it is replaced: written in place, renamed over, or a
 * symlink in its path swapped (a Kubernetes ConfigMap volume swaps `..data`). The watch is on the
 * file's directory, since a rename or a swap gives the path a new inode and a watch on the file
 * itself would hear nothing more. A burst of events is read once, after `debounceMs` of quiet, and
 * `onChange` is called only when the content's SHA-256 differs from the last one seen. Returns
 * the function that stops watching.
 */
export function watchFileContent(path: string, options: ContentWatchOptions): () => void {
  const file = resolve(path);
  let last = contentHash(file);
  let timer: NodeJS.Timeout | undefined;
  const settle = () => {
    timer = undefined;
    const now = contentHash(file);
    // A missing file (between the steps of a replacement) is no change: the next event reads it again.
    if (now === undefined || now === last) return;
    last = now;
    options.onChange();
  };
  let watcher: FSWatcher | undefined = watch(dirname(file), { persistent: false }, () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(settle, options.debounceMs ?? WATCH_DEBOUNCE_MS);
    timer.unref();
  });
  watcher.on('error', (error) => {
    stop();
    options.onError(error);
  });
  const stop = () => {
    if (timer !== undefined) clearTimeout(timer);
    watcher?.close();
    watcher = undefined;
  };
  return stop;
}

function contentHash(file: string): string | undefined {
  try {
    // R5: a FIFO or device put in its place is never read; it counts as no change.
    return createHash('sha256')
      .update(readRegularFileSync(file, { maxBytes: FILE_LIMITS.config }))
      .digest('hex');
  } catch {
    return undefined;
  }
}
