import { statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { SidecarError } from './errors.js';
import { FILE_LIMITS, readRegularFileSync } from './safe-file.js';
import type { SecretReadEvent, SecretReadListener } from './secret-file.js';

/** A client certificate or its key cannot be used (unreadable, not PEM, or not a pair). */
export class ClientCertificateError extends SidecarError {
  constructor(message: string) {
    super('BS_ERR_CLIENT_CERTIFICATE', message);
  }
}

/** A certificate and its private key, PEM, as Node's TLS options take them. */
export interface CertificatePair {
  cert: string;
  key: string;
}

/**
 * E2: a client certificate for mutual TLS (RFC 8705 `tls_client_auth` to the token endpoint,
 * `upstreamTls.certFile`/`keyFile` to the upstream), read from its two files. `current()` is asked
 * for every new connection and reads the files again only when one of them changed (size,
 * modification time or inode: a rewrite or Kubernetes' symlink swap), so a rotated certificate
 * is used by new connections without a restart; connections already open finish with the old one.
 * A pair that cannot be read or does not match keeps the last good one (R6) and tells its listeners
 * once per bad version of the files (`watch`, the same events as a SecretFile): a bad version is
 * remembered, so it is not read again for every new connection.
 */
export class ClientCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  /** Named in reports (the certificate's path; the problem names both files). */
  readonly path: string;
  readonly pipe = false;
  #pair: CertificatePair;
  #version = '';
  /** The version of the files last found unusable (not read again while it stays). */
  #badVersion: string | undefined;
  #problem: string | undefined;
  readonly #listeners = new Set<SecretReadListener>();

  /** Reads and checks the pair now; throws ClientCertificateError naming the files (never their content). */
  constructor(certFile: string, keyFile: string) {
    this.certFile = certFile;
    this.keyFile = keyFile;
    this.path = certFile;
    this.#version = this.#fileVersion();
    this.#pair = readCertificatePair(certFile, keyFile);
  }

  /** The pair to present now. Never throws: a bad rewrite keeps the last good pair (see `problem`). */
  current(): CertificatePair {
    let version: string;
    let problem: string | undefined;
    try {
      version = this.#fileVersion();
    } catch (error) {
      problem = (error as Error).message;
      version = `unreadable: ${problem}`;
    }
    if (version === this.#version || version === this.#badVersion) return this.#pair;
    try {
      if (problem !== undefined) throw new ClientCertificateError(problem);
      this.#pair = readCertificatePair(this.certFile, this.keyFile);
    } catch (error) {
      this.#badVersion = version;
      this.#problem = (error as Error).message;
      this.#emit({ type: 'failed', path: this.path, problem: this.#problem, first: true });
      return this.#pair;
    }
    this.#version = version;
    if (this.#problem !== undefined) this.#emit({ type: 'recovered', path: this.path });
    this.#badVersion = undefined;
    this.#problem = undefined;
    return this.#pair;
  }

  /** Why the files on disk are not in use (the last good pair is), or undefined. */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** Adds a listener for bad versions and recoveries (see reportSecretReads); returns its removal. */
  watch(listener: SecretReadListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: SecretReadEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  #fileVersion(): string {
    return [this.certFile, this.keyFile]
      .map((file) => {
        const stats = statSync(file);
        return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
      })
      .join('|');
  }
}

/**
 * E2: reads a certificate and its key (R5: regular files of at most 1 MiB) and checks that they
 * make a TLS context (PEM, and the key belongs to the certificate). Throws ClientCertificateError.
 */
export function readCertificatePair(certFile: string, keyFile: string): CertificatePair {
  const read = (file: string) => {
    try {
      return readRegularFileSync(file, { maxBytes: FILE_LIMITS.secretOrKey }).toString('utf8');
    } catch (error) {
      throw new ClientCertificateError((error as Error).message);
    }
  };
  const pair = { cert: read(certFile), key: read(keyFile) };
  try {
    createSecureContext(pair);
  } catch {
    throw new ClientCertificateError(
      `${certFile} and ${keyFile} are not a PEM certificate and its private key (or the key does not belong to the certificate)`,
    );
  }
  return pair;
}
