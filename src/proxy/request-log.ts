import type { IncomingMessage } from 'node:http';
import type { Logger } from '../util/logger.js';

/**
 * The log line of a proxied request that ended (answered, refused or abandoned), at debug only:
 * request logs are opt-in. `durationMs` is in milliseconds, logged rounded. The path is logged
 * without its query, which may carry a key or, with inject.query, the token; headers never are
 * (F6). Throws nothing.
 */
export function logProxiedRequest(
  logger: Logger,
  req: IncomingMessage,
  account: string | undefined,
  status: number,
  durationMs: number,
): void {
  if (!logger.isLevelEnabled('debug')) return;
  const path = (req.url ?? '').split('?', 1)[0];
  logger.debug({ account, method: req.method, path, status, durationMs: Math.round(durationMs) }, 'proxied request');
}
