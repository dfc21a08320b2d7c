import { createPrivateKey, createSecretKey, type KeyObject } from 'node:crypto';
import { SidecarError } from './errors.js';
import { FILE_LIMITS, readRegularFileSync } from './safe-file.js';
import type { Secret } from './secret.js';

/*
 * E1: the keys that sign client assertions: the client's private key (`private_key_jwt`) or its
 * secret as an HMAC key (`client_secret_jwt`). Parsed with node:crypto (jose signs, in
 * flows/client-assertion.ts); here so the configuration check can use the same code.
 */

/** The JWS algorithms a client assertion may use (RFC 7518 §3.1, RFC 8037 for EdDSA). */
export const SIGNING_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'HS256',
  'HS384',
  'HS512',
] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** A key ready to sign: the key, its algorithm and the `kid` for the JWS header (if any). */
export interface SigningKey {
  key: KeyObject;
  alg: SigningAlg;
  kid: string | undefined;
}

/** Thrown when a key file cannot be used: unreadable, not a private key, or not for the algorithm. */
export class SigningKeyError extends SidecarError {
  constructor(message: string) {
    super('BS_ERR_SIGNING_KEY', message);
  }
}

/**
 * E1: the private key in `path` (a PKCS#8 / PKCS#1 / SEC1 PEM, or a private JWK as JSON) for
 * `private_key_jwt`, read now (R5: a regular file of at most 1 MiB); see parsePrivateSigningKey.
 * Throws SigningKeyError naming the file (never its content).
 */
export function readPrivateSigningKey(path: string, options: SigningOptions = {}): SigningKey {
  let text: string;
  try {
    text = readRegularFileSync(path, { maxBytes: FILE_LIMITS.secretOrKey }).toString('utf8');
  } catch (error) {
    throw new SigningKeyError(`private key ${path}: ${(error as Error).message}`);
  }
  return parsePrivateSigningKey(text, path, options);
}

/**
 * E1: a private key's text (PEM or JWK) as a signing key. The algorithm is `alg` if given, else
 * the JWK's own `alg`, else the key's usual one (RSA: RS256, RSA-PSS: PS256, EC P-256/384/521:
 * ES256/384/512, Ed25519: EdDSA); the `kid` is `keyId` if given, else the JWK's. `path` only
 * names the key in messages. An RSA key under 2048 bits is refused (jose would refuse every
 * signature). Throws SigningKeyError (never quoting the text).
 */
export function parsePrivateSigningKey(text: string, path: string, options: SigningOptions = {}): SigningKey {
  const jwk = parseJwk(text);
  let key: KeyObject;
  try {
    key = jwk === undefined ? createPrivateKey(text) : createPrivateKey({ key: jwk, format: 'jwk' });
  } catch {
    throw new SigningKeyError(
      `private key ${path} is not a private key: give a PKCS#8 PEM ("BEGIN PRIVATE KEY") or a private JWK`,
    );
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== undefined && bits < MIN_RSA_BITS)
    throw new SigningKeyError(
      `private key ${path} is a ${bits}-bit RSA key: signatures need at least ${MIN_RSA_BITS} bits (RFC 7518 §3.3)`,
    );
  const alg = options.alg ?? jwkAlg(jwk) ?? defaultAlg(key, path);
  const problem = algProblem(key, alg);
  if (problem !== undefined) throw new SigningKeyError(`private key ${path}: ${problem}`);
  return { key, alg, kid: options.keyId ?? (typeof jwk?.kid === 'string' ? jwk.kid : undefined) };
}

/** RFC 7518 §3.3: the smallest RSA key that may sign (jose refuses smaller ones when signing). */
const MIN_RSA_BITS = 2048;

/** The account's choices for its assertions: `signingAlg` and `keyId`. */
export interface SigningOptions {
  alg?: SigningAlg | undefined;
  keyId?: string | undefined;
}

/** E1: the client secret as the HMAC key of `client_secret_jwt` (default HS256). */
export function clientSecretSigningKey(secret: Secret, options: SigningOptions = {}): SigningKey {
  const alg = options.alg ?? 'HS256';
  if (!alg.startsWith('HS'))
    throw new SigningKeyError(`signingAlg ${alg} cannot sign with a client secret: use HS256, HS384 or HS512`);
  return { key: createSecretKey(Buffer.from(secret.reveal(), 'utf8')), alg, kid: options.keyId };
}

/** A JSON object with `kty` (a JWK), or undefined for anything else (a PEM). */
function parseJwk(text: string): (Record<string, unknown> & { kty: string }) | undefined {
  if (!text.trimStart().startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (value !== null && typeof value === 'object' && typeof (value as { kty?: unknown }).kty === 'string')
      return value as Record<string, unknown> & { kty: string };
  } catch {
    // Not JSON: createPrivateKey reports it as not a key.
  }
  return undefined;
}

function jwkAlg(jwk: Record<string, unknown> | undefined): SigningAlg | undefined {
  const alg = jwk?.alg;
  return typeof alg === 'string' && (SIGNING_ALGS as readonly string[]).includes(alg) ? (alg as SigningAlg) : undefined;
}

const CURVE_ALGS: Record<string, SigningAlg> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

function defaultAlg(key: KeyObject, path: string): SigningAlg {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ed25519':
      return 'EdDSA';
    case 'ec': {
      const alg = CURVE_ALGS[key.asymmetricKeyDetails?.namedCurve ?? ''];
      if (alg !== undefined) return alg;
    }
  }
  throw new SigningKeyError(
    `private key ${path}: a ${key.asymmetricKeyType ?? 'unknown'} key${key.asymmetricKeyDetails?.namedCurve ? ` on ${key.asymmetricKeyDetails.namedCurve}` : ''} cannot sign a client assertion: use RSA, EC P-256/384/521 or Ed25519`,
  );
}

/** Why `alg` cannot be used with `key`, or undefined. */
function algProblem(key: KeyObject, alg: SigningAlg): string | undefined {
  const type = key.asymmetricKeyType;
  const fits =
    ((alg.startsWith('RS') || alg.startsWith('PS')) &&
      (type === 'rsa' || (type === 'rsa-pss' && alg.startsWith('PS')))) ||
    (alg.startsWith('ES') && type === 'ec' && CURVE_ALGS[key.asymmetricKeyDetails?.namedCurve ?? ''] === alg) ||
    (alg === 'EdDSA' && type === 'ed25519');
  return fits
    ? undefined
    : `signingAlg ${alg} does not fit a ${type ?? 'unknown'} key: leave signingAlg out to use the key's own`;
}
