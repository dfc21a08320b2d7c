import type { StoreConfig } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import { TokenCodec } from './codec.js';
import { FileTokenStore } from './file.js';
import { MemoryTokenStore } from './memory.js';
import { RedisTokenStore } from './redis.js';
import type { TokenStore } from './types.js';

/** Builds the configured store; the key file was already checked with the configuration. */
export function createStore(config: StoreConfig, logger: Logger): TokenStore {
  if (config.type === 'memory') return new MemoryTokenStore();
  const codec = config.encryptionKeyFile === undefined ? new TokenCodec() : TokenCodec.fromKeyFile(config.encryptionKeyFile);
  if (config.type === 'file') return new FileTokenStore({ path: config.path, codec, logger });
  return new RedisTokenStore({ url: config.url, keyPrefix: config.keyPrefix, codec, logger });
}
