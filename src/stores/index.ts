import type { Logger } from '../util/logger.js';
import { TokenCodec } from './codec.js';
import { FileTokenStore } from './file.js';
import { MemoryTokenStore } from './memory.js';
import { RedisTokenStore } from './redis.js';
import type { RedisTarget } from './redis-connect.js';
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
    } & Omit<RedisTarget, 'password'>);

/** Builds the configured store; the key file was already checked with the configuration. */
export function createStore(config: StoreOptions, logger: Logger): TokenStore {
  if (config.type === 'memory') return new MemoryTokenStore();
  const codec =
    config.encryptionKeyFile === undefined ? new TokenCodec() : TokenCodec.fromKeyFile(config.encryptionKeyFile);
  if (config.type === 'file') return new FileTokenStore({ path: config.path, codec, logger });
  // H1: the password file is read once here; a rotated Redis password takes a restart.
  const password = config.passwordFile === undefined ? undefined : readSecretFileAtStart(config.passwordFile).secret;
  const { type: _type, encryptionKeyFile: _key, passwordFile: _file, ...target } = config;
  return new RedisTokenStore({ ...target, password, codec, logger });
}
