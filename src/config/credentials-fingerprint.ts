import { createHash, scrypt } from 'node:crypto';
import { promisify } from 'node:util';
import type { Secret } from '../util/secret.js';
import { canonicalSetting } from './reload-diff.js';
import type { AuthConfig } from './resolve.js';

/** The version tag of the fingerprint's recipe; a new recipe is a new tag (and a new chain). */
const RECIPE = 'cf1';
/**
 * scrypt cost: 16 MiB and tens of milliseconds per guess (N = 2^14, r = 8, p = 1), paid once per
 * token manager start; a dictionary attack on a password read from the store pays it per word.
 */
const SCRYPT = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const DIGEST_BYTES = 32;
/** Fingerprints computed in this process, by a digest of what they were computed from (never stored). */
const computed = new Map<string, Promise<string>>();
const COMPUTED_KEPT = 64;

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: string,
  length: number,
  options: typeof SCRYPT,
) => Promise<Buffer>;

/**
 * H2: a fingerprint of the credentials `auth` names, stored with every token record they make, so
 * a token manager adopts only its own credentials' chain. `cf1:` and 43 base64url characters:
 * the scrypt digest of the secrets' values (inline passwords, client secrets, refresh tokens),
 * salted with the canonical form of every other `auth` setting (dialect, grant, URLs, client id,
 * user name, scope, audience, client authentication, the paths of secret files ...). A secret that
 * lives in a file is named by its path: a rotated file is the same `auth`, as a reload sees it.
 * Reading it teaches nothing a dictionary attack on the secret gets cheaply (scrypt, 16 MiB per
 * guess). With no inline secret there is nothing to protect: a SHA-256 of the settings, no scrypt. Computed once per token manager (kept per process for the same settings), never per request.
 */
export function credentialsFingerprint(auth: AuthConfig): Promise<string> {
  const secrets: string[] = [];
  const settings = JSON.stringify(
    canonicalSetting(auth, (secret: Secret) => {
      secrets.push(secret.reveal());
      return { secret: secrets.length };
    }),
  );
  const material = JSON.stringify(secrets);
  const key = createHash('sha256').update(settings).update('\0').update(material).digest('base64url');
  const known = computed.get(key);
  if (known !== undefined) return known;
  // Nothing secret in the settings themselves (secrets in files are named by path): a plain digest
  // teaches nothing, and a start spends no scrypt (16 MiB, tens of ms) before its first save.
  if (secrets.length === 0)
    return Promise.resolve(
      `${RECIPE}:${createHash('sha256').update(`bearer-sidecar/${RECIPE}\0${settings}`).digest('base64url')}`,
    );
  const fingerprint = scryptAsync(material, `bearer-sidecar/${RECIPE}\0${settings}`, DIGEST_BYTES, SCRYPT).then(
    (digest) => `${RECIPE}:${digest.toString('base64url')}`,
  );
  if (computed.size >= COMPUTED_KEPT) computed.clear();
  computed.set(key, fingerprint);
  return fingerprint;
}
