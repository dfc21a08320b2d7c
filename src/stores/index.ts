import type { Logger } from '../util/logger.js';
import { TokenCodec } from './codec.js';
import { FileTokenStore } from './file.js';
import { MemoryTokenStore } from './memory.js';
import { RedisTokenStore } from './redis.js';
import type { TokenStore } from './types.js';

/**
 * The store settings createStore takes. Declared here, not taken from config/: the configuration's
 * `store:` section (config/schema.ts) produces exactly this, and config/ may import stores/, never the reverse.
 */
export type StoreOptions =
  | { type: 'memory' }
  | { type: 'file'; path: string; encryptionKeyFile?: string | undefined }
  | { type: 'redis'; url: string; keyPrefix: string; encryptionKeyFile?: string | undefined };

/** Builds the configured store; the key file was already checked with the configuration. */
export function createStore(config: StoreOptions, logger: Logger): TokenStore {
  if (config.type === 'memory') return new MemoryTokenStore();
  const codec =
    config.encryptionKeyFile === undefined ? new TokenCodec() : TokenCodec.fromKeyFile(config.encryptionKeyFile);
  if (config.type === 'file') return new FileTokenStore({ path: config.path, codec, logger });
  return new RedisTokenStore({ url: config.url, keyPrefix: config.keyPrefix, codec, logger });
}
