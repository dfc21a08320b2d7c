import { describe, expect, it } from 'vitest';
import { ActiveToken } from '../../src/tokens/active-token.js';
import { Readiness } from '../../src/tokens/readiness.js';
import { Secret } from '../../src/util/secret.js';
import { captureLogger } from '../helpers/capture-logger.js';

const SECOND = 1000;
const NOW = Date.parse('2026-01-01T00:00:00Z');

const token = (expiresAt: number) =>
  new ActiveToken(new Secret('tok-1'), 1, expiresAt - 60 * SECOND, expiresAt, 60 * SECOND);

describe('T4 a rejected refresh falls back to a login', () => {
  it('T4, T5: refused credentials make the account unready and say why, logged once per reason, until a token comes', () => {
    const log = captureLogger();
    const readiness = new Readiness(log.logger);
    const valid = token(NOW + 30 * SECOND);
    for (let i = 0; i < 3; i++) readiness.credentialsRefused('login', 'invalid_client');
    readiness.credentialsRefused('refresh', 'invalid_grant');
    expect(readiness.refused).toBe(true);
    expect(readiness.state(valid, NOW, { stopped: false, refreshing: false })).toBe('rejected');
    expect(readiness.notReadyReason(valid, NOW)).toBe(
      'refresh token rejected and no credentials to log in with: invalid_grant',
    );
    expect(log.lines().filter((line) => String(line.msg).startsWith('account unready'))).toHaveLength(2);
    readiness.tokenObtained();
    expect(readiness.refused).toBe(false);
    expect(readiness.notReadyReason(valid, NOW)).toBeUndefined();
    expect(log.lines().at(-1)?.msg).toBe('credentials accepted again; account is ready');
  });
});

describe('T7 cold start', () => {
  it('T7: an expired token with no new one is logged once, the reason names the last error, and the next token says ready again', () => {
    const log = captureLogger();
    const readiness = new Readiness(log.logger);
    const expired = token(NOW - SECOND);
    readiness.failed(NOW, 'refresh failed: HTTP 502');
    readiness.noteExpiry(expired, NOW);
    readiness.noteExpiry(expired, NOW + SECOND);
    expect(
      log.lines().filter((line) => String(line.msg).startsWith('account unready: the token expired')),
    ).toHaveLength(1);
    expect(readiness.state(expired, NOW, { stopped: false, refreshing: false })).toBe('expired');
    expect(readiness.notReadyReason(expired, NOW)).toBe(
      `token expired at ${new Date(NOW - SECOND).toISOString()}; last error: refresh failed: HTTP 502`,
    );
    expect(readiness.lastError).toEqual({ at: NOW, message: 'refresh failed: HTTP 502' });
    readiness.tokenObtained();
    expect(readiness.lastError).toBeUndefined();
    expect(log.lines().at(-1)?.msg).toBe('token obtained; account is ready again');
  });
});

describe('§6 admin endpoints', () => {
  it('§6: the states: starting, valid, refreshing, expired, rejected, stopped', () => {
    const readiness = new Readiness(captureLogger().logger);
    const idle = { stopped: false, refreshing: false };
    expect(readiness.state(undefined, NOW, idle)).toBe('starting');
    expect(readiness.notReadyReason(undefined, NOW)).toBe('no token yet');
    expect(readiness.state(token(NOW + SECOND), NOW, idle)).toBe('valid');
    expect(readiness.state(token(NOW + SECOND), NOW, { stopped: false, refreshing: true })).toBe('refreshing');
    expect(readiness.state(token(NOW + SECOND), NOW, { stopped: true, refreshing: true })).toBe('stopped');
    readiness.credentialsRefused('login', 'bad password');
    expect(readiness.state(undefined, NOW, idle)).toBe('rejected');
    readiness.tokenAdopted();
    expect(readiness.state(undefined, NOW, idle)).toBe('starting');
  });
});
