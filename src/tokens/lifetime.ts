import type { LifetimeHints } from '../flows/types.js';
import type { Secret } from '../util/secret.js';

/** Reasons counted in bearer_sidecar_token_lifetime_anomalies_total (docs/contract.md §7, §8). */
export type LifetimeAnomaly = 'missing' | 'invalid' | 'nonpositive' | 'too_short' | 'too_long';

export type LifetimeSource = 'lifetime' | 'expiration' | 'jwt' | 'default';

export interface ResolvedLifetime {
  lifetimeMs: number;
  source: LifetimeSource;
  anomalies: LifetimeAnomaly[];
  /** Server `Date` minus local time, when the response had a Date header. */
  skewMs: number | undefined;
}

export interface LifetimePolicy {
  defaultLifetimeMs: number;
  maxLifetimeMs: number;
  minIntervalMs: number;
}

/**
 * T1: how long a token lives, on the local clock. The server's relative lifetime wins;
 * an absolute expiry is converted with the response's own Date header (so server clock skew
 * cancels out); then a JWT's exp - iat; then defaultLifetime. Odd values are anomalies (§8).
 */
export function resolveLifetime(
  hints: LifetimeHints,
  accessToken: Secret,
  receivedAt: number,
  policy: LifetimePolicy,
): ResolvedLifetime {
  const anomalies: LifetimeAnomaly[] = [];
  const serverNow = hints.date === undefined ? Number.NaN : Date.parse(hints.date);
  const skewMs = Number.isNaN(serverNow) ? undefined : serverNow - receivedAt;

  const fromLifetime = secondsToMs(hints.lifetime, anomalies);
  const candidates: Array<[LifetimeSource, () => number | undefined]> = [
    ['lifetime', () => fromLifetime],
    ['expiration', () => fromExpiration(hints.expiration, Number.isNaN(serverNow) ? receivedAt : serverNow, anomalies)],
    ['jwt', () => fromJwt(accessToken, anomalies)],
  ];
  let lifetimeMs: number | undefined;
  let source: LifetimeSource = 'default';
  for (const [name, compute] of candidates) {
    lifetimeMs = compute();
    if (lifetimeMs !== undefined) {
      source = name;
      break;
    }
  }
  lifetimeMs ??= policy.defaultLifetimeMs;

  if (lifetimeMs > policy.maxLifetimeMs) {
    anomalies.push('too_long');
    lifetimeMs = policy.maxLifetimeMs;
  } else if (lifetimeMs < policy.minIntervalMs) {
    // Honoured: the token really expires then. The loop guard still spaces the requests.
    anomalies.push('too_short');
  }
  return { lifetimeMs, source, anomalies, skewMs };
}

/** A relative lifetime in seconds: a number or numeric string; anything else is an anomaly. */
function secondsToMs(value: unknown, anomalies: LifetimeAnomaly[]): number | undefined {
  if (value === undefined || value === null || value === '') {
    anomalies.push('missing');
    return undefined;
  }
  const seconds =
    typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  if (!Number.isFinite(seconds)) {
    anomalies.push('invalid');
    return undefined;
  }
  if (seconds <= 0) {
    anomalies.push('nonpositive');
    return undefined;
  }
  return seconds * 1000;
}

function fromExpiration(value: unknown, serverNow: number, anomalies: LifetimeAnomaly[]): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const expiresAt =
    typeof value === 'string' ? Date.parse(value) : typeof value === 'number' ? value * 1000 : Number.NaN;
  if (Number.isNaN(expiresAt)) {
    anomalies.push('invalid');
    return undefined;
  }
  const lifetime = expiresAt - serverNow;
  if (lifetime <= 0) {
    anomalies.push('nonpositive');
    return undefined;
  }
  return lifetime;
}

function fromJwt(token: Secret, anomalies: LifetimeAnomaly[]): number | undefined {
  const parts = token.reveal().split('.');
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (claims === null || typeof claims !== 'object') return undefined;
  const { exp, iat } = claims as { exp?: unknown; iat?: unknown };
  if (typeof exp !== 'number' || typeof iat !== 'number') return undefined;
  const lifetime = (exp - iat) * 1000;
  if (lifetime <= 0) {
    anomalies.push('nonpositive');
    return undefined;
  }
  return lifetime;
}
