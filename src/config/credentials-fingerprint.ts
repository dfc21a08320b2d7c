import { createHash, createHmac, randomBytes, scrypt } from 'node:crypto';
import { promisify } from 'node:util';
import type { Secret } from '../util/secret.js';
import { canonicalSetting } from './reload-diff.js';
import type { AuthConfig } from './resolve.js';

/** The version tag of the fingerprint's recipe; a new recipe is a new tag (and a new chain). */
const RECIPE = 'cf1';
/** The tag of a fingerprint that never leaves this process (memory store): an HMAC under a per-process key. */
const LOCAL_RECIPE = 'cl1';
/**
 * scrypt cost: 16 MiB and tens of milliseconds per guess (N = 2^14, r = 8, p = 1), paid once per
 * token manager start; a dictionary attack on a password read from the store pays it per word.
 */
const SCRYPT = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const DIGEST_BYTES = 32;
/** Fingerprints computed in this process, by a digest of what they were computed from (never stored). */
const computed = new Map<string, Promise<string>>();
const COMPUTED_KEPT = 64;
/** The key of in-process fingerprints: random per process, never stored nor logged. */
const LOCAL_KEY = randomBytes(32);
/** The scrypt computations wait here for one another: at most one runs at a time (libuv has 4 threads, DNS needs them). */
let scryptQueue: Promise<unknown> = Promise.resolve();

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: string,
  length: number,
  options: typeof SCRYPT,
) => Promise<Buffer>;

export interface FingerprintOptions {
  /**
   * The records stay in this process (the memory store: not shared, not persisted): an
   * HMAC-SHA256 under a random per-process key, no scrypt.
   */
  inProcess?: boolean;
}

/**
 * H2: a fingerprint of the credentials `auth` names, stored with every token record they make, so
 * a token manager adopts only its own credentials' chain. `cf1:` and 43 base64url characters:
 * the scrypt digest of the secrets' values (inline passwords, client secrets, refresh tokens),
 * salted with the canonical form of every other `auth` setting (dialect, grant, URLs, client id,
 * user name, scope, audience, client authentication, the paths of secret files ...). A secret that
 * lives in a file is named by its path: a rotated file is the same `auth`, as a reload sees it.
 * Reading it teaches nothing a dictionary attack on the secret gets cheaply (scrypt, 16 MiB per
 * guess); one scrypt runs at a time in the process. With no secret in the settings at all (no
 * inline secret, no `extraParams` value, no user info or query in a URL) there is nothing to
 * protect: a SHA-256 of the settings, no scrypt. With `inProcess` (`cl1:`): an HMAC-SHA256 under a
 * random per-process key, no scrypt. Computed once per token manager (kept per process for the
 * same settings), never per request. Rejects only when scrypt fails (out of memory); a failed
 * computation is not kept.
 */
export function credentialsFingerprint(auth: AuthConfig, options: FingerprintOptions = {}): Promise<string> {
  const secrets: string[] = [];
  const settings = JSON.stringify(
    canonicalSetting(auth, (secret: Secret) => {
      secrets.push(secret.reveal());
      return { secret: secrets.length };
    }),
  );
  const material = JSON.stringify(secrets);
  // The scrypt salt, and what the plain digest covers when there is no secret: the settings, tagged.
  const salt = `bearer-sidecar/${RECIPE}\0${settings}`;
  if (options.inProcess === true) {
    const local = createHmac('sha256', LOCAL_KEY).update(settings).update('\0').update(material).digest('base64url');
    return Promise.resolve(`${LOCAL_RECIPE}:${local}`);
  }
  // Nothing secret in the settings themselves (secrets in files are named by path): a plain digest
  // teaches nothing, and a start spends no scrypt (16 MiB, tens of ms) before its first save.
  if (secrets.length === 0 && !settingsHoldSecrets(auth))
    return Promise.resolve(`${RECIPE}:${createHash('sha256').update(salt).digest('base64url')}`);
  const key = createHash('sha256').update(settings).update('\0').update(material).digest('base64url');
  const known = computed.get(key);
  if (known !== undefined) return known;
  const run = () => scryptAsync(material, salt, DIGEST_BYTES, SCRYPT);
  const digest = scryptQueue.then(run, run);
  scryptQueue = digest.catch(() => undefined);
  const fingerprint = digest.then((value) => `${RECIPE}:${value.toString('base64url')}`);
  if (computed.size >= COMPUTED_KEPT) computed.clear();
  computed.set(key, fingerprint);
  // A failed computation (scrypt out of memory) is not kept: the next call computes again.
  fingerprint.catch(() => {
    if (computed.get(key) === fingerprint) computed.delete(key);
  });
  return fingerprint;
}

/**
 * Settings that are plain strings yet may hold secrets: `extraParams` values (an API key sent
 * with the token request), and the user info or query of an `auth` URL.
 */
function settingsHoldSecrets(auth: AuthConfig): boolean {
  const fields = auth as unknown as Record<string, unknown>;
  const extra = fields['extraParams'];
  if (extra !== null && typeof extra === 'object' && Object.values(extra).some((value) => typeof value === 'string'))
    return true;
  return Object.entries(fields).some(
    ([name, value]) => name.endsWith('Url') && typeof value === 'string' && urlHoldsSecrets(value),
  );
}

function urlHoldsSecrets(value: string): boolean {
  try {
    const url = new URL(value);
    return url.username !== '' || url.password !== '' || url.search !== '';
  } catch {
    return true; // not parsed: taken as secret, to be safe
  }
}
