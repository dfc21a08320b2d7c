import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { formatPrettyLine, prettyDestination } from '../../src/util/log-pretty.js';
import { REDACTED_LOG_PATHS } from '../../src/util/logger.js';
import { Secret } from '../../src/util/secret.js';

function prettyLogger(): { logger: pino.Logger; text: () => string } {
  const chunks: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logger = pino(
    { level: 'debug', redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' }, base: undefined },
    prettyDestination(out as unknown as pino.DestinationStream, { color: false }),
  );
  return { logger, text: () => chunks.join('') };
}

describe('--log-format pretty (issue 8)', () => {
  it('issue 8: one readable line per entry: time, level, message, then key=value fields', () => {
    const line = formatPrettyLine(
      JSON.stringify({
        level: 30,
        time: Date.parse('2026-01-01T12:00:01.234Z'),
        msg: 'token request: login succeeded',
        account: 'fleet',
        durationMs: 12,
        reason: 'a b',
      }),
      { color: false },
    );
    expect(line).toBe('12:00:01.234 INFO  token request: login succeeded  account=fleet durationMs=12 reason="a b"\n');
  });

  it('issue 8: colours only when asked (a terminal), errors show their message and stack', () => {
    const entry = {
      level: 50,
      time: 0,
      msg: 'boom',
      err: { type: 'Error', message: 'bad thing', stack: 'Error: bad thing\n    at x' },
    };
    expect(formatPrettyLine(JSON.stringify(entry), { color: true })).toContain('\u001b[31mERROR');
    const plain = formatPrettyLine(JSON.stringify(entry), { color: false });
    expect(plain).toContain('err="bad thing"');
    expect(plain).toContain('\n    Error: bad thing\n        at x');
  });

  it('issue 8: a line that is not JSON passes through unchanged', () => {
    expect(formatPrettyLine('plain text', { color: false })).toBe('plain text\n');
  });
});

describe('F6 no secret in any output', () => {
  it('F6: pretty output is redacted exactly like JSON (Secret type and pino paths)', () => {
    const secret = 'super-secret-value-123';
    const { logger, text } = prettyLogger();
    logger.info(
      { password: secret, headers: { authorization: `Bearer ${secret}` }, token: new Secret(secret) },
      'with secrets',
    );
    expect(text()).toContain('with secrets');
    expect(text()).not.toContain(secret);
    expect(text()).toContain('[redacted]');
  });
});
