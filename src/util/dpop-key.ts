import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readPrivateSigningKey, SigningKeyError } from './signing-key.js';

/*
 * E4: the key that signs an account's DPoP proofs (RFC 9449 §4.2). Loaded (or made) once at
 * start: the tokens it gets are bound to it, so it must not change while they live.
 */

/** The proof algorithms: ES256 (EC P-256) and EdDSA (Ed25519), the two that sign fast. */
export type DpopAlg = 'ES256' | 'EdDSA';

/** A DPoP private key, its algorithm, and where it came from (shown by check and /status). */
export interface DpopKey {
  key: KeyObject;
  alg: DpopAlg;
  /** The key file's path, or undefined for a key generated at start. */
  file: string | undefined;
}

/**
 * E4: the DPoP key of `auth.dpop`: read from `keyFile` (an EC P-256 or Ed25519 private key, PEM
 * or JWK; R5 bounds), or without one a new EC P-256 key (ES256) that lives as long as the
 * process. Throws SigningKeyError naming the file (never its content) for any other key.
 */
export function loadDpopKey(keyFile: string | undefined): DpopKey {
  if (keyFile === undefined) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { key: privateKey, alg: 'ES256', file: undefined };
  }
  const { key } = readPrivateSigningKey(keyFile);
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1') return { key, alg: 'ES256', file: keyFile };
  if (key.asymmetricKeyType === 'ed25519') return { key, alg: 'EdDSA', file: keyFile };
  throw new SigningKeyError(
    `DPoP key ${keyFile}: a ${key.asymmetricKeyType ?? 'unknown'} key${curve === undefined ? '' : ` on ${curve}`} cannot sign DPoP proofs here: use an EC P-256 (ES256) or Ed25519 (EdDSA) key`,
  );
}
