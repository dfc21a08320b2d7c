import { statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { SidecarError } from './errors.js';
import { FILE_LIMITS, readRegularFileSync } from './safe-file.js';

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
 * A pair that cannot be read or does not match keeps the last good one (R6), and says so once.
 */
export class ClientCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  #pair: CertificatePair;
  #version = '';
  #problem: string | undefined;

  /** Reads and checks the pair now; throws ClientCertificateError naming the files (never their content). */
  constructor(certFile: string, keyFile: string) {
    this.certFile = certFile;
    this.keyFile = keyFile;
    this.#version = this.#fileVersion();
    this.#pair = readCertificatePair(certFile, keyFile);
  }

  /** The pair to present now. Never throws: a bad rewrite keeps the last good pair (see `problem`). */
  current(): CertificatePair {
    let version: string;
    try {
      version = this.#fileVersion();
    } catch (error) {
      this.#problem = (error as Error).message;
      return this.#pair;
    }
    if (version === this.#version) return this.#pair;
    try {
      this.#pair = readCertificatePair(this.certFile, this.keyFile);
      this.#version = version;
      this.#problem = undefined;
    } catch (error) {
      this.#problem = (error as Error).message;
    }
    return this.#pair;
  }

  /** Why the files on disk are not in use (the last good pair is), or undefined. */
  get problem(): string | undefined {
    return this.#problem;
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
