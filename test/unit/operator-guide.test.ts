import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import { parseCli } from '../../src/cli-args.js';
import { loadConfig } from '../../src/config/load.js';

/* Issue 8: the README's operator guide is exercised, so a copied config or command works. */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const guide = readme.slice(readme.indexOf('## Operator guide'), readme.indexOf('## Development'));

function blocks(language: string): string[] {
  return [...guide.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))].map((match) => match[1] ?? '');
}

describe('README operator guide (issue 8)', () => {
  it('issue 8: the guide exists, before Development, with the troubleshooting rows the issue asks for', () => {
    expect(guide.length).toBeGreaterThan(1000);
    expect(guide).toMatch(/\| \*\*refresh loop\*\*/);
    expect(guide).toMatch(/\| \*\*clock skew\*\*/);
    for (const heading of [
      'check',
      'authorize',
      '/status',
      'Logs',
      'Per token dialect',
      'Quick mode',
      'Troubleshooting',
    ])
      expect(guide).toContain(heading);
  });

  it('issue 8: every YAML config in the guide is a valid configuration', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-guide-'));
    try {
      const yamls = blocks('yaml');
      expect(yamls.length).toBeGreaterThanOrEqual(4);
      yamls.forEach((text, index) => {
        // Secret files and state directories become real temp paths.
        const local = text
          .replace(/\/secrets\/[\w./-]+/g, (path) => {
            const file = join(dir, path);
            mkdirSync(dirname(file), { recursive: true });
            writeFileSync(file, 'generated-at-test-time\n');
            return file;
          })
          .replace(/\/var\/lib\/bearer-sidecar/g, () => {
            const state = join(dir, 'state');
            mkdirSync(state, { recursive: true });
            return state;
          });
        const file = join(dir, `guide-${index}.yaml`);
        writeFileSync(file, local);
        const config = loadConfig({ file, env: { FLEET_USER: 'u', PLATFORM_USER: 'p' } });
        expect(config.accounts.length, `yaml block ${index}`).toBeGreaterThan(0);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('§2 commands', () => {
  it('§2 / issue 8: every bearer-sidecar command line in the guide parses (flags exist for that command)', () => {
    const lines = blocks('sh')
      .map((block) => block.replace(/\\\n\s*/g, ' '))
      .flatMap((block) => block.split('\n'))
      .map((line) =>
        line
          .replace(/\s#.*$/, '')
          .replace(/&\s*$/, '')
          .trim(),
      )
      .map((line) => line.replace(/^(\w+=\S+\s+)+/, ''))
      .filter((line) => line.startsWith('bearer-sidecar'));
    expect(lines.length).toBeGreaterThanOrEqual(10);
    for (const line of lines) expect(() => parseCli(line.split(/\s+/).slice(1)), line).not.toThrow();
  });
});

describe('§7 metrics', () => {
  it('§7: every metric the troubleshooting table names exists', () => {
    const named = [...guide.matchAll(/bearer_sidecar_[a-z_]+/g)].map((match) => match[0]);
    const known: string[] = Object.values(METRIC_NAMES);
    expect(named.length).toBeGreaterThan(5);
    for (const name of named) expect(known, name).toContain(name);
  });
});
