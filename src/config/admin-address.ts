import { existsSync } from 'node:fs';
import { loadConfig } from './load.js';
import { parseHostPort } from '../util/host-port.js';

/** Where the image keeps its config file (Dockerfile CMD). */
const IMAGE_CONFIG_FILE = '/etc/bearer-sidecar/config.yaml';
const DEFAULT_ADMIN = { host: '127.0.0.1', port: 9464 };

/**
 * The address to reach this container's admin port on, found the way `serve` finds it:
 * BEARER_SIDECAR_ADMIN (`[HOST:]PORT`), else the config file's `admin` (BEARER_SIDECAR_CONFIG, else
 * `imageConfigFile` when it exists), else 127.0.0.1:9464. A wildcard host (0.0.0.0, ::) becomes
 * loopback. A config that does not load falls back to the variable or the default (reporting a bad
 * config is `serve`'s job, at start). Never throws. Used by the image's HEALTHCHECK (src/healthcheck.ts).
 */
export function adminAddressToCall(
  env: NodeJS.ProcessEnv = process.env,
  imageConfigFile: string = IMAGE_CONFIG_FILE,
): { host: string; port: number } {
  const file = env.BEARER_SIDECAR_CONFIG ?? (existsSync(imageConfigFile) ? imageConfigFile : undefined);
  let address = DEFAULT_ADMIN;
  const fromEnv = env.BEARER_SIDECAR_ADMIN === undefined ? undefined : parseHostPort(env.BEARER_SIDECAR_ADMIN);
  if (fromEnv !== undefined && typeof fromEnv.port === 'number') {
    address = { host: fromEnv.host ?? DEFAULT_ADMIN.host, port: fromEnv.port };
  }
  if (file !== undefined) {
    try {
      address = loadConfig({ file, flags: { admin: env.BEARER_SIDECAR_ADMIN }, env }).admin;
    } catch {
      // serve reports a config that does not load; a health check only needs an address.
    }
  }
  return { host: loopbackFor(address.host), port: address.port };
}

function loopbackFor(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}
