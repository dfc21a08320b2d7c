import { createHash, createPublicKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { DpopAlg, DpopKey } from '../util/dpop-key.js';
import { SidecarError } from '../util/errors.js';
import { headerSafeTokenProblem } from '../util/header-safe.js';

/*
 * E4 DPoP (RFC 9449): one account's proof key and the nonces its servers asked for. jose
 * exports the public key, computes its thumbprint (RFC 7638) and signs the token requests'
 * proofs; it is imported when the first prover is built (an account with `auth.dpop`), not with
 * this module, so a sidecar without DPoP or client assertions never loads it (0.6 MiB of heap,
 * docs/performance.md "Memory"). The proof on every proxied request is signed with node:crypto's
 * synchronous `sign` over a header encoded once per key: no await on the hot path, about a third of jose's cost
 * (figures in docs/performance.md).
 */

/** Where a nonce came from (metric label `where`, E7). */
export type DpopNonceSource = 'token' | 'upstream';

/** RFC 9449 §8, §9: the error code of a server that wants a nonce in the proof. */
export const USE_DPOP_NONCE = 'use_dpop_nonce';

/** A nonce longer than this is not kept (a nonce is an opaque short string, RFC 9449 §8). */
const MAX_NONCE_LENGTH = 512;

/** What check and /status show of the key: never the private part. */
export interface DpopKeyReport {
  alg: DpopAlg;
  /** The key file, or `generated at start`. */
  key: string;
  /** RFC 7638 SHA-256 thumbprint of the public key (the tokens' `cnf.jkt`); undefined until computed. */
  jkt: string | undefined;
}

/**
 * E4: signs DPoP proofs with one account's key, and keeps the latest nonce each server sent
 * (the token endpoint's and the upstream's apart, RFC 9449 §8, §9). `ready` resolves once the
 * public JWK and its thumbprint are known (jose's calls are async); token requests await it,
 * and the data plane never sees a DPoP token before the first one ended.
 */
export class DpopProver {
  readonly alg: DpopAlg;
  readonly ready: Promise<void>;
  readonly #key: KeyObject;
  readonly #file: string | undefined;
  readonly #nowMs: () => number;
  #jwk: JWK | undefined;
  #jkt: string | undefined;
  /** `base64url(header) + '.'`, the same for every proof of this key. */
  #headerPrefix = '';
  readonly #nonces: Record<DpopNonceSource, string | undefined> = { token: undefined, upstream: undefined };
  /** The upstream's nonce as a JSON member (`,"nonce":"…"`), or '' (built once per nonce, not per proof). */
  #upstreamNonceMember = '';

  constructor(key: DpopKey, nowMs: () => number = Date.now) {
    this.alg = key.alg;
    this.#key = key.key;
    this.#file = key.file;
    this.#nowMs = nowMs;
    this.ready = this.#prepare();
  }

  async #prepare(): Promise<void> {
    const { calculateJwkThumbprint, exportJWK } = await import('jose');
    const { kty, crv, x, y } = await exportJWK(createPublicKey(this.#key));
    const jwk: JWK = y === undefined ? { kty, crv, x } : { kty, crv, x, y };
    this.#jwk = jwk;
    this.#jkt = await calculateJwkThumbprint(jwk, 'sha256');
    const header = JSON.stringify({ typ: 'dpop+jwt', alg: this.alg, jwk });
    this.#headerPrefix = `${Buffer.from(header, 'utf8').toString('base64url')}.`;
  }

  /** The key in words, for check and /status (no private part). */
  report(): DpopKeyReport {
    return { alg: this.alg, key: this.#file ?? 'generated at start', jkt: this.#jkt };
  }

  /** The latest nonce `source` sent, if any. */
  nonce(source: DpopNonceSource): string | undefined {
    return this.#nonces[source];
  }

  /**
   * Keeps the nonce of a server's `DPoP-Nonce` header (RFC 9449 §8.2: the newest one is used);
   * a value that is not header-safe or longer than 512 characters is ignored. True when kept.
   */
  takeNonce(source: DpopNonceSource, header: string | string[] | undefined): boolean {
    const value = Array.isArray(header) ? header[0] : header;
    if (value === undefined || value.length > MAX_NONCE_LENGTH || headerSafeTokenProblem(value) !== undefined)
      return false;
    this.#nonces[source] = value;
    if (source === 'upstream') this.#upstreamNonceMember = `,"nonce":${JSON.stringify(value)}`;
    return true;
  }

  /**
   * E4: a proof for a token request (RFC 9449 §4.2): `htm` POST, `htu` the token URL without query
   * and fragment, a fresh `jti`, `iat` now, and the token endpoint's nonce if it sent one. Signed by jose.
   */
  async tokenRequestProof(tokenUrl: URL): Promise<string> {
    await this.ready;
    const { SignJWT } = await import('jose');
    const nonce = this.#nonces.token;
    return new SignJWT({ htm: 'POST', htu: `${tokenUrl.origin}${tokenUrl.pathname}`, ...(nonce ? { nonce } : {}) })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: this.alg, jwk: this.#jwk as JWK })
      .setJti(randomUUID())
      .setIssuedAt(Math.floor(this.#nowMs() / 1000))
      .sign(this.#key);
  }

  /**
   * E4 hot path: a proof for one upstream request (RFC 9449 §4.2, §7.1): `htm`, `htu` (the
   * upstream URL without its query), `ath` (accessTokenHash, once per token), a fresh `jti`,
   * `iat`, and the upstream's nonce if it sent one. Synchronous: one `sign` call. Throws before
   * `ready` resolved (no DPoP token can exist before then).
   */
  requestProof(htm: string, htu: string, ath: string): string {
    if (this.#headerPrefix === '') throw new SidecarError('BS_ERR_INTERNAL', 'the DPoP key is not ready yet');
    const iat = Math.floor(this.#nowMs() / 1000);
    const payload = `{"jti":"${randomUUID()}","htm":${JSON.stringify(htm)},"htu":${JSON.stringify(htu)},"iat":${iat},"ath":"${ath}"${this.#upstreamNonceMember}}`;
    const input = this.#headerPrefix + Buffer.from(payload, 'utf8').toString('base64url');
    const signature =
      this.alg === 'ES256'
        ? sign('sha256', Buffer.from(input, 'latin1'), { key: this.#key, dsaEncoding: 'ieee-p1363' })
        : sign(null, Buffer.from(input, 'latin1'), this.#key);
    return `${input}.${signature.toString('base64url')}`;
  }
}

/** RFC 9449 §4.2 `ath`: base64url(SHA-256(the access token's ASCII)). */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/**
 * RFC 9449 §9: true when an upstream's answer asks for a nonce: a 401 whose `WWW-Authenticate`
 * names the DPoP scheme with `error="use_dpop_nonce"`.
 */
export function asksForDpopNonce(status: number, wwwAuthenticate: string | string[] | undefined): boolean {
  if (status !== 401 || wwwAuthenticate === undefined) return false;
  const values = Array.isArray(wwwAuthenticate) ? wwwAuthenticate : [wwwAuthenticate];
  return values.some((value) => /(^|,)\s*dpop\s/i.test(value) && /error\s*=\s*"?use_dpop_nonce"?/i.test(value));
}
