import { Writable } from 'node:stream';
import { pino } from 'pino';
import { REDACTED_LOG_PATHS, type Logger } from '../../src/util/logger.js';

/** A real pino logger (same redaction as production) whose lines a test can read. */
export function captureLogger(level = 'debug'): {
  logger: Logger;
  lines: () => Array<Record<string, unknown>>;
  text: () => string;
} {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logger = pino({ level, redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' }, base: undefined }, stream);
  const text = () => chunks.join('');
  const lines = () =>
    text()
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, text };
}
