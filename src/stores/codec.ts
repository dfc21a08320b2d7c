import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { headerSafeTokenProblem } from '../util/header-safe.js';
import { FILE_LIMITS, readRegularFileSync, UnsafeFileError } from '../util/safe-file.js';
import { Secret } from '../util/secret.js';
import type { StoredToken } from './types.js';
import { SidecarError, messageOf } from '../util/errors.js';

/** The version tag every stored token record carries (file and Redis alike). */
export const STORE_FORMAT = 'bearer-sidecar/token-v1';

/** A token record as it is written at rest: plain JSON, secrets optionally encrypted. */
export interface EncodedToken {
  format: typeof STORE_FORMAT;
  revision: number;
  obtainedAt: number;
  expiresAt: number;
  lifetimeMs: number;
  accessToken: string;
  refreshToken: string | null;
  /** H2: the fingerprint of the credentials that made the chain (sealed like the tokens); absent in older records. */
  credentials?: string;
  /** When the record was written (ISO 8601), for people reading the store; never used. */
  updatedAt: string;
}

/** A stored record this codec cannot turn back into a token. The message never holds a secret. */
export class StoreFormatError extends SidecarError {
  constructor(
    /** Stable, greppable: too_large, not_json, not_an_object, foreign_format, missing_field, encrypted_without_key, plaintext_with_key, malformed_ciphertext, wrong_key, token_not_header_safe. */
    readonly reason: string,
    message: string,
  ) {
    super('BS_ERR_STORE_FORMAT', message);
  }
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const CIPHER = 'aes-256-gcm';
const ENCRYPTED_PREFIX = 'enc:v1:';
const BASE64URL = /^[A-Za-z0-9_-]*$/;
type SecretField = 'accessToken' | 'refreshToken' | 'credentials';

/**
 * Turns token state into a versioned, JSON-able record and back. With a key, both secrets and
 * the credentials fingerprint (H2) are AES-256-GCM encrypted, each with its own random IV and its
 * account and field name as associated data, so a value cannot be moved to another field or
 * another account unnoticed. With a key set, a plaintext secret is refused too: the key then also
 * vouches that nobody planted a token in the store.
 */
export class TokenCodec {
  readonly #key: Buffer | undefined;

  constructor(key?: Buffer) {
    if (key !== undefined && key.length !== KEY_BYTES) {
      throw new SidecarError(
        'BS_ERR_STORE_KEY',
        `store encryption key: expected ${KEY_BYTES} bytes, got ${key.length}`,
      );
    }
    this.#key = key === undefined ? undefined : Buffer.from(key);
  }

  /**
   * Reads a key file: exactly 32 raw bytes, or 64 hex characters, or the base64 (or base64url)
   * of 32 bytes; trailing CR/LF after the text forms is ignored. Errors name the file, never
   * the key. R5: a regular file (symlinks followed) of at most 1 MiB; a FIFO never blocks.
   */
  static fromKeyFile(path: string): TokenCodec {
    let bytes: Buffer;
    try {
      bytes = readRegularFileSync(path, { maxBytes: FILE_LIMITS.secretOrKey });
    } catch (error) {
      if (error instanceof UnsafeFileError && (error.reason === 'missing' || error.reason === 'unreadable')) {
        throw new SidecarError(
          'BS_ERR_STORE_KEY',
          `store encryption key file ${path}: cannot be read (${error.errno ?? 'error'})`,
          {
            cause: error,
          },
        );
      }
      throw new SidecarError('BS_ERR_STORE_KEY', `store encryption key file ${messageOf(error)}`, { cause: error });
    }
    const key = parseKey(bytes);
    if (key === undefined) {
      throw new SidecarError(
        'BS_ERR_STORE_KEY',
        `store encryption key file ${path}: expected 32 raw bytes, 64 hex characters or the base64 of 32 bytes ` +
          `(found ${bytes.length} bytes in another form); generate one with: openssl rand -hex 32`,
      );
    }
    return new TokenCodec(key);
  }

  /** `account` is authenticated with each secret: a record cannot be moved to another account unnoticed. */
  encode(account: string, record: StoredToken, now: number = Date.now()): EncodedToken {
    const { state } = record;
    return {
      format: STORE_FORMAT,
      revision: record.revision,
      obtainedAt: state.obtainedAt,
      expiresAt: state.expiresAt,
      lifetimeMs: state.lifetimeMs,
      accessToken: this.#seal(account, 'accessToken', state.accessToken),
      refreshToken: state.refreshToken === undefined ? null : this.#seal(account, 'refreshToken', state.refreshToken),
      ...(state.credentials === undefined
        ? {}
        : { credentials: this.#seal(account, 'credentials', new Secret(state.credentials)) }),
      updatedAt: new Date(now).toISOString(),
    };
  }

  /**
   * Throws StoreFormatError for anything that is not a token-v1 record readable with this key,
   * including a token that could not be sent in a header (R1): such a record is unusable (R7).
   */
  decode(account: string, value: unknown): StoredToken {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new StoreFormatError('not_an_object', 'stored token is not a JSON object');
    }
    const record = value as Record<string, unknown>;
    if (record.format !== STORE_FORMAT) {
      throw new StoreFormatError(
        'foreign_format',
        `stored token has format ${describeFormat(record.format)}, expected "${STORE_FORMAT}"`,
      );
    }
    const revision = record.revision;
    if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) {
      throw missingField('revision', 'a positive integer');
    }
    const obtainedAt = finiteNumber(record, 'obtainedAt');
    const expiresAt = finiteNumber(record, 'expiresAt');
    const lifetimeMs = finiteNumber(record, 'lifetimeMs');
    if (typeof record.updatedAt !== 'string') throw missingField('updatedAt', 'a string');
    const accessToken = record.accessToken;
    if (typeof accessToken !== 'string' || accessToken === '') throw missingField('accessToken', 'a non-empty string');
    const refreshToken = record.refreshToken;
    if (refreshToken !== null && (typeof refreshToken !== 'string' || refreshToken === '')) {
      throw missingField('refreshToken', 'a non-empty string or null');
    }
    const credentials = record.credentials;
    if (credentials !== undefined && (typeof credentials !== 'string' || credentials === '')) {
      throw missingField('credentials', 'a non-empty string when present');
    }
    return {
      revision,
      state: {
        accessToken: this.#open(account, 'accessToken', accessToken),
        obtainedAt,
        expiresAt,
        lifetimeMs,
        refreshToken: refreshToken === null ? undefined : this.#open(account, 'refreshToken', refreshToken),
        // H2: a record of an older version has none (its chain is adopted as before).
        ...(credentials === undefined ? {} : { credentials: this.#open(account, 'credentials', credentials).reveal() }),
      },
    };
  }

  #seal(account: string, field: SecretField, secret: Secret): string {
    if (this.#key === undefined) return secret.reveal();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(CIPHER, this.#key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(account, field));
    const ciphertext = Buffer.concat([cipher.update(secret.reveal(), 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `${ENCRYPTED_PREFIX}${iv.toString('base64url')}:${tag.toString('base64url')}:${ciphertext.toString('base64url')}`;
  }

  #open(account: string, field: SecretField, stored: string): Secret {
    const secret = this.#reveal(account, field, stored);
    const problem = headerSafeTokenProblem(secret.reveal());
    if (problem !== undefined) throw new StoreFormatError('token_not_header_safe', `stored ${field}: ${problem}`);
    return secret;
  }

  #reveal(account: string, field: SecretField, stored: string): Secret {
    const encrypted = stored.startsWith(ENCRYPTED_PREFIX);
    if (this.#key === undefined) {
      if (encrypted) {
        throw new StoreFormatError(
          'encrypted_without_key',
          `stored ${field} is encrypted but no encryption key is configured (store.encryptionKeyFile)`,
        );
      }
      return new Secret(stored);
    }
    if (!encrypted) {
      throw new StoreFormatError(
        'plaintext_with_key',
        `stored ${field} is not encrypted but an encryption key is configured`,
      );
    }
    const parts = stored.slice(ENCRYPTED_PREFIX.length).split(':');
    const [ivText, tagText, ciphertextText] = parts;
    if (
      parts.length !== 3 ||
      ivText === undefined ||
      tagText === undefined ||
      ciphertextText === undefined ||
      !parts.every((part) => BASE64URL.test(part))
    ) {
      throw new StoreFormatError('malformed_ciphertext', `stored ${field} is not a well-formed enc:v1 value`);
    }
    const iv = Buffer.from(ivText, 'base64url');
    const tag = Buffer.from(tagText, 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
      throw new StoreFormatError('malformed_ciphertext', `stored ${field} is not a well-formed enc:v1 value`);
    }
    try {
      const decipher = createDecipheriv(CIPHER, this.#key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(associatedData(account, field));
      decipher.setAuthTag(tag);
      const plaintext = Buffer.concat([decipher.update(Buffer.from(ciphertextText, 'base64url')), decipher.final()]);
      return new Secret(plaintext.toString('utf8'));
    } catch {
      // GCM says only "unable to authenticate": a different key, or a tampered or swapped value.
      throw new StoreFormatError(
        'wrong_key',
        `stored ${field} cannot be decrypted: wrong encryption key, or the value was altered`,
      );
    }
  }
}

/** The account and the field are authenticated with each value (not secret, not stored). */
function associatedData(account: string, field: SecretField): Buffer {
  return Buffer.from(`${account}\0${field}`, 'utf8');
}

function parseKey(bytes: Buffer): Buffer | undefined {
  // Exactly 32 bytes is a raw key, even if its last bytes happen to be CR or LF.
  if (bytes.length === KEY_BYTES) return bytes;
  const text = bytes.toString('latin1').replace(/[\r\n]+$/, '');
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text) || /^[A-Za-z0-9_-]{43}$/.test(text)) {
    const decoded = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64');
    if (decoded.length === KEY_BYTES) return decoded;
  }
  return undefined;
}

function finiteNumber(record: Record<string, unknown>, field: string): number {
  const value = record[field];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw missingField(field, 'a finite number');
  return value;
}

function missingField(field: string, expected: string): StoreFormatError {
  return new StoreFormatError('missing_field', `stored token field "${field}" is missing or not ${expected}`);
}

/** Names a foreign format only when it looks like a format tag, so odd content is never echoed. */
export function describeFormat(format: unknown): string {
  if (format === undefined) return '(none)';
  if (typeof format === 'string' && /^[\w./:@-]{1,80}$/.test(format)) return JSON.stringify(format);
  return '(unrecognised)';
}
