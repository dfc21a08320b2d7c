// A bearer-sidecar config as the product itself reads it: loadConfig() from dist/ (npm run build).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const { loadConfig, ConfigError } = await import(new URL('../../../dist/config/load.js', import.meta.url).href);

/** `${VAR}` and `${VAR:-default}` in a config's text: [match, name, ':-default' or undefined]. */
export const envReferences = (text) => text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g);

/** Every `...File` field of a config, with its dotted path. */
export function fileFields(node, prefix = '') {
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) => {
    const here = prefix ? `${prefix}.${key}` : key;
    if (key.endsWith('File') && typeof value === 'string') return [{ path: here, value }];
    return fileFields(value, here);
  });
}

/**
 * Loads a config's text with loadConfig(): { config } or { problems } (the product's ConfigError).
 * What cannot exist at CI time is stood in for, for every section alike: `...File` paths point at
 * placeholder files (the store's encryptionKeyFile at a real key, which the product checks),
 * `${VAR}`s get placeholder values (the chart's ${BEARER_SIDECAR_REDIS_PASSWORD} in store.url among
 * them), and a file store's directory is a temporary one. Nothing else is set aside: a problem in
 * `store` fails like any other. Nothing connects to Redis or to an upstream here.
 */
export function loadProductConfig(text) {
  const raw = parseYaml(text);
  const dir = mkdtempSync(path.join(tmpdir(), 'bearer-sidecar-config-'));
  try {
    const secrets = path.join(dir, 'files');
    mkdirSync(secrets);
    const rewrite = (node) => {
      if (Array.isArray(node)) return node.map(rewrite);
      if (node === null || typeof node !== 'object') return node;
      return Object.fromEntries(
        Object.entries(node).map(([key, value]) => {
          if (key.endsWith('File') && typeof value === 'string') {
            const file = path.join(secrets, `${key}-${randomBytes(6).toString('hex')}`);
            writeFileSync(file, key === 'encryptionKeyFile' ? `${randomBytes(32).toString('hex')}\n` : 'placeholder\n');
            return [key, file];
          }
          return [key, rewrite(value)];
        }),
      );
    };
    const env = {};
    for (const [, name] of envReferences(text)) env[name] = `placeholder-${name.toLowerCase()}`;
    const tree = rewrite(raw);
    // The product checks that a file store's directory is writable: point it at a temporary one.
    if (tree?.store?.type === 'file')
      tree.store = { ...tree.store, path: path.join(dir, 'state', path.basename(tree.store.path)) };
    mkdirSync(path.join(dir, 'state'));
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, JSON.stringify(tree));
    try {
      return { config: loadConfig({ file, env }) };
    } catch (error) {
      if (error instanceof ConfigError) return { problems: error.problems };
      throw error;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
