import { pino, type Logger, type DestinationStream } from 'pino';
import { prettyDestination } from './log-pretty.js';
import { escapeJsonLine } from './scrub.js';

export type { Logger };

/**
 * Paths pino blanks out even if a caller forgets that secrets are `Secret`s (F6):
 * the second fence behind the Secret type.
 */
export const REDACTED_LOG_PATHS = [
  'password',
  'clientSecret',
  'client_secret',
  'refreshToken',
  'refresh_token',
  'token',
  'access_token',
  'apiKey',
  'headers.authorization',
  'headers["x-sidecar-key"]',
  '*.password',
  '*.clientSecret',
  '*.client_secret',
  '*.refreshToken',
  '*.refresh_token',
  '*.token',
  '*.access_token',
  '*.apiKeys',
  '*.headers.authorization',
  '*.headers["x-sidecar-key"]',
];

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export interface LoggerOptions {
  level?: string;
  /** Default: pretty when the output is a terminal, else JSON (one object per line). */
  format?: LogFormat;
  /** 1 (stdout, the default) or 2 (stderr: commands whose stdout is their result, like check --json). */
  fd?: 1 | 2;
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const fd = options.fd ?? 1;
  const tty = (fd === 1 ? process.stdout : process.stderr).isTTY === true;
  const format = options.format ?? (tty ? 'pretty' : 'json');
  const destination = options.destination ?? systemDestination(fd, format, tty);
  return pino(
    {
      name: 'bearer-sidecar',
      level: options.level ?? 'info',
      redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' },
      base: undefined,
      // R4: no terminal escape reaches a terminal that shows the JSON lines.
      hooks: { streamWrite: escapeJsonLine },
    },
    destination,
  );
}

function systemDestination(fd: 1 | 2, format: LogFormat, tty: boolean): DestinationStream {
  const out = pino.destination({ dest: fd, sync: false });
  return format === 'pretty' ? prettyDestination(out, { color: tty }) : out;
}

/** A logger that writes nothing: the default for library use and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
