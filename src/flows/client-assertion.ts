import { randomUUID } from 'node:crypto';
import { Secret } from '../util/secret.js';
import type { OAuth2Auth } from '../config/resolve.js';
import { parsePrivateSigningKey, SigningKeyError, type SigningKey } from '../util/signing-key.js';

/*
 * E1: client authentication with a signed JWT instead of a shared secret in the request
 * (RFC 7523 §2.2, OpenID Connect Core §9): `private_key_jwt` signs with the client's private
 * key, `client_secret_jwt` with an HMAC of the client secret. jose makes every JWS; it is
 * imported at the first assertion (dpop.ts says why).
 */

/** RFC 7523 §2.2: the value of `client_assertion_type`. */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** How long an assertion is valid: at most the five minutes identity providers commonly accept. */
export const ASSERTION_LIFETIME_SECONDS = 300;

/**
 * E1: a new client assertion (RFC 7523 §3): `iss` and `sub` the client id, `aud` the token
 * endpoint, a fresh `jti`, `iat` now and `exp` ASSERTION_LIFETIME_SECONDS later (seconds of the
 * wall clock: the identity provider checks them against its own). Resolves to a Secret (it is a
 * credential for as long as it is valid).
 */
export async function signClientAssertion(options: {
  clientId: string;
  audience: string;
  signingKey: SigningKey;
  nowSeconds?: number;
}): Promise<Secret> {
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const { key, alg, kid } = options.signingKey;
  const { SignJWT } = await import('jose');
  const jwt = await new SignJWT({})
    .setProtectedHeader(kid === undefined ? { alg, typ: 'JWT' } : { alg, kid, typ: 'JWT' })
    .setIssuer(options.clientId)
    .setSubject(options.clientId)
    .setAudience(options.audience)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + ASSERTION_LIFETIME_SECONDS)
    .sign(key);
  return new Secret(jwt);
}

/**
 * E1, E3: the account's private key (`privateKeyFile`), read now through its watched file (R6:
 * the last good content while the file cannot be read). Throws SigningKeyError.
 */
export async function readPrivateSigningKeyFile(
  auth: Pick<OAuth2Auth, 'privateKey' | 'signingAlg' | 'keyId'>,
): Promise<SigningKey> {
  if (auth.privateKey === undefined) throw new SigningKeyError('no privateKeyFile is configured');
  const text = (await auth.privateKey.read()).reveal();
  return parsePrivateSigningKey(text, auth.privateKey.path, { alg: auth.signingAlg, keyId: auth.keyId });
}
