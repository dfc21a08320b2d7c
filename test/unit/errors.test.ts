import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, hasCode, messageOf, SidecarError } from '../../src/util/errors.js';

const ROOT = join(import.meta.dirname, '..', '..');

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

describe('the internal error catalogue', () => {
  const documented = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');

  it('every code in the catalogue is documented in docs/errors.md, and nothing else is', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(documented).toContain(`| \`${code}\` |`);
    const listed = [...documented.matchAll(/\| `(BS_ERR_[A-Z_]+)` \|/g)].map((match) => match[1]);
    expect(listed.sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it('every error class in src/ is a SidecarError, and every code src/ raises is in the catalogue', () => {
    for (const file of sources('src')) {
      const text = readFileSync(file, 'utf8');
      if (!file.endsWith(join('util', 'errors.ts'))) expect(text, file).not.toMatch(/extends Error\b/);
      expect(text, file).not.toMatch(/throw new Error\(/);
      for (const [code] of text.matchAll(/BS_ERR_[A-Z_]+/g)) expect(Object.keys(ERROR_CODES), file).toContain(code);
    }
  });

  it('errors are told apart by code; anything thrown has a message', () => {
    const error = new SidecarError('BS_ERR_INTERNAL', 'boom');
    expect(hasCode(error, 'BS_ERR_INTERNAL')).toBe(true);
    expect(hasCode(error, 'BS_ERR_CONFIG')).toBe(false);
    expect(hasCode(new Error('x'), 'BS_ERR_INTERNAL')).toBe(false);
    expect(error.name).toBe('SidecarError');
    expect(messageOf(error)).toBe('boom');
    expect(messageOf('text')).toBe('text');
    expect(messageOf(42)).toBe('42');
  });
});
