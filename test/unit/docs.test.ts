import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { SIDECAR_ERRORS } from '../../src/proxy/errors.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** Every key the schema accepts, as README writes them (`accounts.NAME.auth.tokenUrl`). */
function schemaKeys(schema: z.ZodType, path: string[] = []): string[] {
  const def = (schema as unknown as { def: { type: string; innerType?: z.ZodType; in?: z.ZodType; valueType?: z.ZodType; options?: z.ZodType[]; shape?: unknown } }).def;
  switch (def.type) {
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
      return schemaKeys(def.innerType as z.ZodType, path);
    case 'pipe':
      return schemaKeys(def.in as z.ZodType, path);
    case 'union':
      return (def.options ?? []).flatMap((option) => schemaKeys(option, path));
    case 'record':
      return path.at(-1) === 'accounts' ? schemaKeys(def.valueType as z.ZodType, [...path, 'NAME']) : [];
    case 'object': {
      const shape = (schema as unknown as { shape: Record<string, z.ZodType> }).shape;
      return Object.entries(shape).flatMap(([key, value]) => [[...path, key].join('.'), ...schemaKeys(value, [...path, key])]);
    }
    default:
      return [];
  }
}

describe('README agrees with the code', () => {
  it('F5: every error code the sidecar produces is documented with its status', () => {
    for (const [code, { status }] of Object.entries(SIDECAR_ERRORS)) {
      expect(readme).toMatch(new RegExp(`\\| ${status} \\| \`${code}\` \\|`));
    }
  });

  it('§7: every metric name is documented', () => {
    for (const name of Object.values(METRIC_NAMES)) expect(readme).toContain(`\`${name}\``);
  });

  it('§3: every configuration key of the schema is in the configuration reference', () => {
    const reference = readme.slice(readme.indexOf('## Configuration reference'), readme.indexOf('## Token behaviour'));
    const keys = [...new Set(schemaKeys(configSchema))];
    expect(keys.length).toBeGreaterThan(40);
    // A row names the full path, or (for sibling keys) the path once and the sibling by name.
    const missing = keys.filter((key) => {
      const leaf = key.slice(key.lastIndexOf('.') + 1);
      const parent = key.slice(0, key.lastIndexOf('.'));
      return !reference.includes(`\`${key}\``) && !(reference.includes(`\`${parent}.`) && reference.includes(`\`${leaf}\``));
    });
    expect(missing).toEqual([]);
  });

  it('§3: every example config in config/ is valid', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-examples-'));
    try {
      const files = readdirSync(join(root, 'config')).filter((file) => /\.(ya?ml|json)$/.test(file));
      expect(files.length).toBeGreaterThanOrEqual(3);
      for (const file of files) {
        // The examples point at /secrets/...: give them real files under a temp dir.
        const text = readFileSync(join(root, 'config', file), 'utf8').replace(/\/secrets\/[\w./-]+/g, (path) => {
          const local = join(dir, path);
          mkdirSync(dirname(local), { recursive: true });
          writeFileSync(local, 'generated-at-test-time\n');
          return local;
        });
        writeFileSync(join(dir, file), text);
        const config = loadConfig({ file: join(dir, file), env: { FLEET_USER: 'u', PLATFORM_USER: 'p' } });
        expect(config.accounts.length, file).toBeGreaterThan(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
