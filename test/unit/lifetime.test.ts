import { describe, expect, it } from 'vitest';
import type { LifetimeHints } from '../../src/flows/types.js';
import { resolveLifetime, type LifetimePolicy } from '../../src/tokens/lifetime.js';
import { Secret } from '../../src/util/secret.js';

const SECOND = 1000;
const HOUR = 3_600_000;

/** Local receive time, on a whole second so an HTTP Date header can express it exactly. */
const RECEIVED_AT = Date.UTC(2024, 0, 15, 12, 0, 0);

const POLICY: LifetimePolicy = { defaultLifetimeMs: 300_000, maxLifetimeMs: 24 * HOUR, minIntervalMs: 5_000 };

const OPAQUE = new Secret('c04c7ff7-5fa1-48fb-aa2a-bcf97a6b8a79');

function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

function hints(partial: Partial<LifetimeHints>): LifetimeHints {
  return { lifetime: undefined, expiration: undefined, date: undefined, ...partial };
}

/** An unsigned JWT (alg none) with the given claims. */
function jwt(claims: Record<string, unknown>): Secret {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
  return new Secret(`${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`);
}

describe('T1: lifetime sources in order', () => {
  it('T1: the relative lifetime wins even when tokenExpiration disagrees and the Date header is 2h ahead', () => {
    const serverNow = RECEIVED_AT + 2 * HOUR;
    const resolved = resolveLifetime(
      hints({ lifetime: 3600, expiration: new Date(serverNow + 10 * SECOND).toISOString(), date: httpDate(serverNow) }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved).toEqual({ lifetimeMs: 3600 * SECOND, source: 'lifetime', anomalies: [], skewMs: 2 * HOUR });
  });

  it('T1: a skewed server clock (Date 2h behind) does not move the expiry', () => {
    const serverNow = RECEIVED_AT - 2 * HOUR;
    const resolved = resolveLifetime(
      hints({
        lifetime: 3600,
        expiration: new Date(serverNow + 3600 * SECOND).toISOString(),
        date: httpDate(serverNow),
      }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved.lifetimeMs).toBe(3600 * SECOND);
    expect(resolved.source).toBe('lifetime');
    expect(resolved.skewMs).toBe(-2 * HOUR);
  });

  it('T1: with no lifetime, tokenExpiration is converted with the Date header (server 2h ahead, expiry = Date + 600s → 600s), counted as missing', () => {
    const serverNow = RECEIVED_AT + 2 * HOUR;
    const resolved = resolveLifetime(
      hints({ expiration: new Date(serverNow + 600 * SECOND).toISOString(), date: httpDate(serverNow) }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved).toEqual({
      lifetimeMs: 600 * SECOND,
      source: 'expiration',
      anomalies: ['missing'],
      skewMs: 2 * HOUR,
    });
  });

  it('T1: a seed-style tokenExpiration with an offset ("+00:00") is converted with the Date header', () => {
    const resolved = resolveLifetime(
      hints({ expiration: '2018-04-01T21:39:12+00:00', date: 'Sun, 01 Apr 2018 20:39:12 GMT' }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved.lifetimeMs).toBe(3600 * SECOND);
    expect(resolved.source).toBe('expiration');
  });

  it('T1: tokenExpiration without a Date header is converted with the local receive time', () => {
    const resolved = resolveLifetime(
      hints({ expiration: new Date(RECEIVED_AT + 900 * SECOND).toISOString() }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved).toEqual({
      lifetimeMs: 900 * SECOND,
      source: 'expiration',
      anomalies: ['missing'],
      skewMs: undefined,
    });
  });

  it('T1: an unparseable Date header is ignored (local time, no skew reported)', () => {
    const resolved = resolveLifetime(
      hints({ expiration: new Date(RECEIVED_AT + 900 * SECOND).toISOString(), date: 'yesterday-ish' }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved.lifetimeMs).toBe(900 * SECOND);
    expect(resolved.skewMs).toBeUndefined();
  });

  it("T1: with neither lifetime nor expiration, a JWT's exp - iat is the lifetime", () => {
    const iat = Math.floor(RECEIVED_AT / SECOND) - 7200; // iat on a skewed clock does not matter: only exp - iat
    const resolved = resolveLifetime(hints({}), jwt({ sub: 'x', iat, exp: iat + 900 }), RECEIVED_AT, POLICY);
    expect(resolved).toEqual({ lifetimeMs: 900 * SECOND, source: 'jwt', anomalies: ['missing'], skewMs: undefined });
  });

  it('T1: a JWT without iat or exp falls through to defaultLifetime', () => {
    const resolved = resolveLifetime(hints({}), jwt({ sub: 'x', exp: 2_000_000_000 }), RECEIVED_AT, POLICY);
    expect(resolved.source).toBe('default');
    expect(resolved.lifetimeMs).toBe(POLICY.defaultLifetimeMs);
  });

  it('T1: defaultLifetime is the last resort', () => {
    const resolved = resolveLifetime(hints({}), OPAQUE, RECEIVED_AT, POLICY);
    expect(resolved).toEqual({ lifetimeMs: 300_000, source: 'default', anomalies: ['missing'], skewMs: undefined });
  });

  describe('§7 metrics', () => {
    it('§7: skewMs reported is the Date header minus the local receive time', () => {
      const resolved = resolveLifetime(
        hints({ lifetime: 60, date: httpDate(RECEIVED_AT + 37 * SECOND) }),
        OPAQUE,
        RECEIVED_AT,
        POLICY,
      );
      expect(resolved.skewMs).toBe(37 * SECOND);
      expect(
        resolveLifetime(hints({ lifetime: 60, date: httpDate(RECEIVED_AT) }), OPAQUE, RECEIVED_AT, POLICY).skewMs,
      ).toBe(0);
    });
  });
});

describe('§8: lifetime anomalies', () => {
  it('§8: a numeric string lifetime ("3600") is accepted with no anomaly', () => {
    expect(resolveLifetime(hints({ lifetime: '3600' }), OPAQUE, RECEIVED_AT, POLICY)).toEqual({
      lifetimeMs: 3600 * SECOND,
      source: 'lifetime',
      anomalies: [],
      skewMs: undefined,
    });
  });

  it('§8: a lifetime that is not a number ("abc") is invalid and falls through to tokenExpiration', () => {
    const resolved = resolveLifetime(
      hints({
        lifetime: 'abc',
        expiration: new Date(RECEIVED_AT + 120 * SECOND).toISOString(),
        date: httpDate(RECEIVED_AT),
      }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved.anomalies).toEqual(['invalid']);
    expect(resolved.source).toBe('expiration');
    expect(resolved.lifetimeMs).toBe(120 * SECOND);
  });

  it('§8: a lifetime of "abc" with nothing else falls through to defaultLifetime', () => {
    const resolved = resolveLifetime(hints({ lifetime: 'abc' }), OPAQUE, RECEIVED_AT, POLICY);
    expect(resolved).toEqual({
      lifetimeMs: POLICY.defaultLifetimeMs,
      source: 'default',
      anomalies: ['invalid'],
      skewMs: undefined,
    });
  });

  it('§8: non-number types (true, {}, []) are invalid', () => {
    for (const lifetime of [true, {}, [3600]]) {
      expect(
        resolveLifetime(hints({ lifetime }), OPAQUE, RECEIVED_AT, POLICY).anomalies,
        JSON.stringify(lifetime),
      ).toEqual(['invalid']);
    }
  });

  it('§8: a lifetime of 0 is nonpositive and falls through', () => {
    const resolved = resolveLifetime(hints({ lifetime: 0 }), OPAQUE, RECEIVED_AT, POLICY);
    expect(resolved).toEqual({
      lifetimeMs: POLICY.defaultLifetimeMs,
      source: 'default',
      anomalies: ['nonpositive'],
      skewMs: undefined,
    });
  });

  it('§8: a lifetime of -5 is nonpositive and falls through to the JWT', () => {
    const resolved = resolveLifetime(hints({ lifetime: -5 }), jwt({ iat: 1000, exp: 1600 }), RECEIVED_AT, POLICY);
    expect(resolved).toEqual({
      lifetimeMs: 600 * SECOND,
      source: 'jwt',
      anomalies: ['nonpositive'],
      skewMs: undefined,
    });
  });

  it('§8: a tokenExpiration already past on the server clock is nonpositive and falls through', () => {
    const resolved = resolveLifetime(
      hints({ expiration: new Date(RECEIVED_AT - 60 * SECOND).toISOString(), date: httpDate(RECEIVED_AT) }),
      OPAQUE,
      RECEIVED_AT,
      POLICY,
    );
    expect(resolved.source).toBe('default');
    expect(resolved.anomalies).toEqual(['missing', 'nonpositive']);
  });

  it('§8: a lifetime longer than maxLifetime is cut to it and counted too_long', () => {
    const resolved = resolveLifetime(hints({ lifetime: 10 * 365 * 24 * 3600 }), OPAQUE, RECEIVED_AT, POLICY);
    expect(resolved).toEqual({
      lifetimeMs: POLICY.maxLifetimeMs,
      source: 'lifetime',
      anomalies: ['too_long'],
      skewMs: undefined,
    });
  });

  it('§8: a lifetime shorter than minInterval is kept (the token expires when the server says) and counted too_short', () => {
    const resolved = resolveLifetime(hints({ lifetime: 2 }), OPAQUE, RECEIVED_AT, POLICY);
    expect(resolved).toEqual({
      lifetimeMs: 2 * SECOND,
      source: 'lifetime',
      anomalies: ['too_short'],
      skewMs: undefined,
    });
  });

  it('§8: a lifetime exactly at maxLifetime or minInterval is no anomaly', () => {
    expect(resolveLifetime(hints({ lifetime: 24 * 3600 }), OPAQUE, RECEIVED_AT, POLICY).anomalies).toEqual([]);
    expect(resolveLifetime(hints({ lifetime: 5 }), OPAQUE, RECEIVED_AT, POLICY).anomalies).toEqual([]);
  });
});
