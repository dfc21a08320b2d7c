import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSecretFileAtStart, SecretFile, type SecretReadEvent } from '../../src/util/secret-file.js';

const dir = mkdtempSync(join(tmpdir(), 'bearer-sidecar-secret-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let count = 0;
function secretFile(content: string): string {
  count += 1;
  const file = join(dir, `${count}-secret`);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

function generated(): string {
  return randomBytes(12).toString('hex');
}

/** A SecretFile as the configuration makes it: read once at start-up, then at every use. */
function started(file: string): { source: SecretFile; events: SecretReadEvent[] } {
  const source = new SecretFile(file, readSecretFileAtStart(file));
  const events: SecretReadEvent[] = [];
  source.watch((event) => events.push(event));
  return { source, events };
}

describe('R6 SecretFile: a secret file that later fails keeps its last good value', () => {
  it('R6: a file that later reads empty (or only newlines) keeps the last good value; the run of failures is reported first once', async () => {
    const good = generated();
    const file = secretFile(`${good}\n`);
    const { source, events } = started(file);
    writeFileSync(file, '');
    expect((await source.read()).reveal()).toBe(good);
    writeFileSync(file, '\n\n');
    expect((await source.read()).reveal()).toBe(good);
    expect(events).toEqual([
      { type: 'failed', path: file, problem: `${file} is empty`, first: true },
      { type: 'failed', path: file, problem: `${file} is empty`, first: false },
    ]);
  });

  it('R6: a file that later cannot be read (removed, replaced by a FIFO, a directory, or over 1 MiB) keeps the last good value and never blocks', async () => {
    const good = generated();
    const file = secretFile(good);
    const { source, events } = started(file);
    const replacements: Array<[() => void, string]> = [
      [() => rmSync(file), `cannot read ${file} (ENOENT)`],
      [() => execFileSync('mkfifo', [file]), `${file} is a FIFO, not a regular file`],
      [
        () => {
          rmSync(file);
          mkdirSync(file);
        },
        `${file} is a directory, not a regular file`,
      ],
      [
        () => {
          rmSync(file, { recursive: true });
          writeFileSync(file, '');
          truncateSync(file, 1024 * 1024 + 1);
        },
        `${file} is larger than 1 MiB`,
      ],
    ];
    for (const [replace, problem] of replacements) {
      replace();
      expect((await source.read()).reveal()).toBe(good);
      expect(events.at(-1)).toMatchObject({ type: 'failed', problem });
    }
    expect(events.filter((event) => event.type === 'failed' && event.first)).toHaveLength(1);
  });

  it('R6: the report resets when the file reads well again: recovered, the new value is used, and the next failure is first again', async () => {
    const file = secretFile(generated());
    const { source, events } = started(file);
    writeFileSync(file, '');
    await source.read();
    const rotated = generated();
    writeFileSync(file, rotated);
    expect((await source.read()).reveal()).toBe(rotated);
    writeFileSync(file, '');
    expect((await source.read()).reveal()).toBe(rotated);
    expect(events.map((event) => (event.type === 'failed' ? `failed first=${event.first}` : event.type))).toEqual([
      'failed first=true',
      'recovered',
      'failed first=true',
    ]);
  });

  it('R6: with no good value yet (never read well), a failed read throws: a rejected login (§8), never an empty secret', async () => {
    const file = secretFile('');
    const source = new SecretFile(file);
    await expect(source.read()).rejects.toThrow(`${file} is empty`);
  });

  it('R6: events and errors name the path and never the secret', async () => {
    const good = generated();
    const file = secretFile(good);
    const { source, events } = started(file);
    writeFileSync(file, `${'x'.repeat(2 * 1024 * 1024)}${good}`);
    await source.read();
    expect(JSON.stringify(events)).not.toContain(good);
    expect(JSON.stringify(source)).not.toContain(good);
  });
});
