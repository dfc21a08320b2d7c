import { pino, type Logger, type DestinationStream } from 'pino';

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

export interface LoggerOptions {
  level?: string;
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: 'bearer-sidecar',
      level: options.level ?? 'info',
      redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' },
      base: undefined,
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that writes nothing: the default for library use and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
