import type { Logger } from '../util/logger.js';
import { TokenCodec } from './codec.js';
import { FileTokenStore } from './file.js';
import { MemoryTokenStore } from './memory.js';
import { RedisTokenStore } from './redis.js';
import { rootCertificates } from 'node:tls';
import type { RedisTarget, RedisTls } from './redis-connect.js';
import { FILE_LIMITS, readRegularFileSync } from '../util/safe-file.js';
import { readSecretFileAtStart } from '../util/secret-file.js';
import type { TokenStore } from './types.js';

/**
 * The store settings createStore takes. Declared here, not taken from config/: the configuration's
 * `store:` section (config/schema.ts) produces exactly this, and config/ may import stores/, never the reverse.
 */
export type StoreOptions =
  | { type: 'memory' }
  | { type: 'file'; path: string; encryptionKeyFile?: string | undefined }
  | ({
      type: 'redis';
      keyPrefix: string;
      encryptionKeyFile?: string | undefined;
      passwordFile?: string | undefined;
      tls?: RedisTlsFiles | undefined;
    } & Omit<RedisTarget, 'password' | 'tls'>);

/** `store.tls`: PEM files, read once at start (a renewed certificate takes a restart). */
export interface RedisTlsFiles {
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

/** Builds the configured store; the key file was already checked with the configuration. */
export function createStore(config: StoreOptions, logger: Logger): TokenStore {
  if (config.type === 'memory') return new MemoryTokenStore();
  const codec =
    config.encryptionKeyFile === undefined ? new TokenCodec() : TokenCodec.fromKeyFile(config.encryptionKeyFile);
  if (config.type === 'file') return new FileTokenStore({ path: config.path, codec, logger });
  // H1: the password file is read once here; a rotated Redis password takes a restart.
  const password = config.passwordFile === undefined ? undefined : readSecretFileAtStart(config.passwordFile).secret;
  const { type: _type, encryptionKeyFile: _key, passwordFile: _file, tls: tlsFiles, ...target } = config;
  const tls = tlsFiles === undefined ? undefined : readRedisTls(tlsFiles);
  return new RedisTokenStore({ ...target, password, tls, codec, logger });
}

/**
 * H1: `store.tls`'s files as TLS options. R5: each a regular file of at most 1 MiB. Throws
 * (SafeFileError) when one cannot be read; the configuration check has reported that already.
 */
export function readRedisTls(files: RedisTlsFiles): RedisTls {
  const read = (path: string) => readRegularFileSync(path, { maxBytes: FILE_LIMITS.secretOrKey }).toString('utf8');
  return {
    ...(files.caFile === undefined ? {} : { ca: [...rootCertificates, read(files.caFile)] }),
    ...(files.certFile === undefined ? {} : { cert: read(files.certFile) }),
    ...(files.keyFile === undefined ? {} : { key: read(files.keyFile) }),
  };
}
