import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../../src/admin/metrics.js';
import { parseCli } from '../../src/cli-args.js';
import { loadConfig } from '../../src/config/load.js';

/*
 * Issue 8: the operator guide (the README and the user docs it links) is exercised, so a copied
 * config or command works as written.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
/** The pages whose `yaml` blocks are bearer-sidecar configs and whose `sh` blocks run bearer-sidecar. */
const GUIDE_PAGES = ['README.md', 'docs/configuration.md', 'docs/operations.md', 'docs/kubernetes.md'];
const guide = GUIDE_PAGES.map((file) => readFileSync(join(root, file), 'utf8')).join('\n');
/** docs/kubernetes.md's yaml blocks are Helm values and chart templates, not configs. */
const configPages = GUIDE_PAGES.filter((file) => file !== 'docs/kubernetes.md')
  .map((file) => readFileSync(join(root, file), 'utf8'))
  .join('\n');

function blocks(language: string, text = guide): string[] {
  return [...text.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))].map((match) => match[1] ?? '');
}

describe('README operator guide (issue 8)', () => {
  it('issue 8: the guide exists, with the troubleshooting rows the issue asks for in the README', () => {
    expect(guide.length).toBeGreaterThan(1000);
    expect(readme).toMatch(/\| \*\*refresh loop\*\*/);
    expect(readme).toMatch(/\| \*\*clock skew\*\*/);
    for (const heading of [
      '## Operations',
      '### Quick mode one-liners',
      '## Troubleshooting',
      '## Configuration by example',
    ])
      expect(readme).toContain(heading);
    for (const heading of ['`bearer-sidecar check`', '`bearer-sidecar authorize`', '## The `/status` page', '## Logs'])
      expect(guide).toContain(heading);
  });

  it('issue 8: every YAML config in the guide is a valid configuration', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-guide-'));
    try {
      const yamls = blocks('yaml', configPages);
      expect(yamls.length).toBeGreaterThanOrEqual(6);
      yamls.forEach((text, index) => {
        // Secret files and state directories become real temp paths.
        const local = text
          .replace(/\/secrets\/[\w./-]+/g, (path) => {
            const file = join(dir, path);
            mkdirSync(dirname(file), { recursive: true });
            // A private key must be one (it is checked at start-up); any other secret is just text.
            const key = /key\.pem$/.test(path)
              ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' })
              : 'generated-at-test-time\n';
            writeFileSync(file, key);
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
