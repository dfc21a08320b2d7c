import type { DestinationStream } from 'pino';
import { escapeControlCharacters } from './scrub.js';

/*
 * `--log-format pretty`: pino's JSON lines (already redacted) turned into one readable line
 * each, for a person at a terminal. Small on purpose: no extra production dependency.
 */

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\u001b[90m' },
  20: { name: 'DEBUG', color: '\u001b[36m' },
  30: { name: 'INFO ', color: '\u001b[32m' },
  40: { name: 'WARN ', color: '\u001b[33m' },
  50: { name: 'ERROR', color: '\u001b[31m' },
  60: { name: 'FATAL', color: '\u001b[35m' },
};
const RESET = '\u001b[0m';
const DIM = '\u001b[2m';
/** Fields every line has, shown in their own places rather than as key=value. */
const FRAME_KEYS = new Set(['level', 'time', 'msg', 'name', 'pid', 'hostname']);

/** One pino JSON line → `12:00:01.234 INFO  message  key=value …` (an error's stack on the lines below). */
export function formatPrettyLine(line: string, options: { color: boolean }): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${escapeControlCharacters(line)}\n`;
  }
  const level = LEVELS[typeof entry.level === 'number' ? entry.level : 30] ?? { name: String(entry.level), color: '' };
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
  const paint = (color: string, text: string) => (options.color ? `${color}${text}${RESET}` : text);
  const fields: string[] = [];
  let stack: string | undefined;
  for (const [key, value] of Object.entries(entry)) {
    if (FRAME_KEYS.has(key) || value === undefined) continue;
    if ((key === 'err' || key === 'error') && value !== null && typeof value === 'object') {
      const error = value as { message?: unknown; stack?: unknown };
      fields.push(`${key}=${quote(String(error.message ?? ''))}`);
      if (typeof error.stack === 'string') stack = error.stack;
      continue;
    }
    fields.push(`${key}=${typeof value === 'string' ? quote(value) : escapeControlCharacters(JSON.stringify(value))}`);
  }
  // R4: one entry is one line, and nothing in it can steer the terminal.
  const message = typeof entry.msg === 'string' ? escapeControlCharacters(entry.msg) : '';
  const head = `${paint(DIM, time)} ${paint(level.color, level.name)} ${message}`;
  const tail = fields.length === 0 ? '' : `  ${paint(DIM, fields.join(' '))}`;
  const stackLines =
    stack === undefined
      ? ''
      : `\n${stack
          .split('\n')
          .map((text) => `    ${escapeControlCharacters(text)}`)
          .join('\n')}`;
  return `${head}${tail}${stackLines}\n`;
}

/** A field value: bare when plain, else JSON-quoted; control characters always escaped (R4). */
function quote(text: string): string {
  const safe = escapeControlCharacters(text);
  return safe === text && /^[^\s"=]+$/.test(text) ? text : escapeControlCharacters(JSON.stringify(text));
}

/** A pino destination that writes pretty lines to `out` (a sonic-boom or any stream with write()). */
export function prettyDestination(
  out: DestinationStream & { flush?(cb?: (error?: Error) => void): void },
  options: { color: boolean },
): DestinationStream {
  return {
    write(chunk: string) {
      // pino writes one line per call; split anyway so a batched write stays readable.
      for (const line of chunk.split('\n')) if (line !== '') out.write(formatPrettyLine(line, options));
    },
    flush(cb?: (error?: Error) => void) {
      if (out.flush) out.flush(cb);
      else cb?.();
    },
  } as DestinationStream;
}
