import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pathProblem } from '../../src/proxy/paths.js';
import { fuzzSettings } from '../helpers/fuzz-settings.js';

/*
 * S3 as a property: whatever path the sidecar accepts, an upstream that percent-decodes it (with
 * %u escapes, leniently, accepting overlong UTF-8 as old decoders did, or as Latin-1) and then
 * NFKC-normalises it sees no dot segment and no separator that was not a raw "/" in the path.
 */

/** Every code point (BMP and the next plane) whose NFKC form holds ".", "/" or "\". */
const LOOK_ALIKES: number[] = [];
for (let codePoint = 0x80; codePoint < 0x2_0000; codePoint += 1) {
  if (codePoint >= 0xd800 && codePoint <= 0xdfff) continue;
  const form = String.fromCodePoint(codePoint).normalize('NFKC');
  if (form.includes('.') || form.includes('/') || form.includes('\\')) LOOK_ALIKES.push(codePoint);
}

const hex = (byte: number) => `%${byte.toString(16).padStart(2, '0')}`;
const percentUtf8 = (codePoint: number) => [...Buffer.from(String.fromCodePoint(codePoint), 'utf8')].map(hex).join('');

/** An overlong encoding of an ASCII character in `length` bytes (2 to 6). */
function overlong(char: string, length: number): string {
  const code = char.charCodeAt(0);
  const bytes: number[] = [];
  let rest = code;
  for (let k = 1; k < length; k += 1) {
    bytes.unshift(0x80 | (rest & 0x3f));
    rest >>= 6;
  }
  bytes.unshift((0xff << (8 - length)) & 0xff);
  return bytes.map(hex).join('');
}

const piece = fc.oneof(
  fc.constantFrom('/', '.', '..', 'a', 'b', '%2e', '%2E', '%', ';', '%25', 'u', '%20'),
  fc.integer({ min: 0, max: 255 }).map(hex),
  fc.constantFrom(...LOOK_ALIKES).map(percentUtf8),
  fc.constantFrom(...LOOK_ALIKES).map((codePoint) => `%u${codePoint.toString(16).padStart(4, '0')}`),
  fc
    .integer({ min: 0x80, max: 0x10_ffff })
    .filter((c) => c < 0xd800 || c > 0xdfff)
    .map(percentUtf8),
  fc.tuple(fc.constantFrom('.', '/', '\\', 'a'), fc.integer({ min: 2, max: 6 })).map(([c, n]) => overlong(c, n)),
  fc.integer({ min: 0x80, max: 0xff }).map((byte) => String.fromCharCode(byte)),
  fc.constantFrom(...LOOK_ALIKES).map((codePoint) => Buffer.from(String.fromCodePoint(codePoint)).toString('latin1')),
);
/** Encodes again: every character as an escape of its bytes, or only each `%` as `%25`. */
function encodeAgain(text: string, everyCharacter: boolean): string {
  if (!everyCharacter) return text.replaceAll('%', '%25');
  return [...text]
    .map((char) => [...Buffer.from(char, char.charCodeAt(0) <= 0xff ? 'latin1' : 'utf8')].map(hex).join(''))
    .join('');
}

/** A dot, a separator or a look-alike (raw or escaped) encoded once to three times more, each time either way (S3). */
const reEncoded = fc
  .tuple(
    fc.oneof(
      fc.constantFrom('.', '..', '/', '\\', ';', '%2e', '%2e%2e', '%2f', '%5c', '%00', '%c0%ae'),
      fc.constantFrom(...LOOK_ALIKES).map(percentUtf8),
    ),
    fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }),
  )
  .map(([text, levels]) => levels.reduce(encodeAgain, text));

const paths = fc.array(fc.oneof(piece, reEncoded), { maxLength: 12 }).map((pieces) => `/${pieces.join('')}`);

/** The path's bytes: %XX decoded, %uXXXX as the character's UTF-8, other characters as Latin-1 bytes. */
function bytesOf(path: string): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i += 1) {
    const u = /^%u([0-9a-f]{4})/i.exec(path.slice(i));
    const x = /^%([0-9a-f]{2})/i.exec(path.slice(i));
    if (u) {
      bytes.push(...Buffer.from(String.fromCodePoint(Number.parseInt(u[1]!, 16)), 'utf8'));
      i += 5;
    } else if (x) {
      bytes.push(Number.parseInt(x[1]!, 16));
      i += 2;
    } else bytes.push(path.charCodeAt(i) & 0xff);
  }
  return bytes;
}

/** A lenient decoder: UTF-8 sequences of 2 to 6 bytes, overlong or not; anything else as Latin-1. */
function lenientDecode(bytes: readonly number[]): string {
  let text = '';
  for (let i = 0; i < bytes.length; i += 1) {
    const lead = bytes[i]!;
    const length =
      lead >= 0xfe
        ? 0
        : lead >= 0xfc
          ? 6
          : lead >= 0xf8
            ? 5
            : lead >= 0xf0
              ? 4
              : lead >= 0xe0
                ? 3
                : lead >= 0xc0
                  ? 2
                  : 0;
    const tail = bytes.slice(i + 1, i + length);
    if (length > 0 && tail.length === length - 1 && tail.every((b) => (b & 0xc0) === 0x80)) {
      const codePoint = tail.reduce((cp, b) => cp * 64 + (b & 0x3f), lead & (0x7f >> length));
      text += codePoint <= 0x10_ffff ? String.fromCodePoint(codePoint) : '\ufffd';
      i += length - 1;
    } else text += String.fromCharCode(lead);
  }
  return text;
}

/** What a normalising upstream could see: each decoding, then NFKC; decoded once, twice or three times. */
function upstreamViews(path: string): string[] {
  const views: string[] = [];
  let text = path;
  for (let depth = 1; depth <= 3; depth += 1) {
    const bytes = bytesOf(text);
    views.push(
      ...[
        lenientDecode(bytes),
        new TextDecoder('utf-8').decode(Uint8Array.from(bytes)),
        Buffer.from(bytes).toString('latin1'),
      ].map((view) => view.normalize('NFKC')),
    );
    text = Buffer.from(bytes).toString('latin1');
  }
  return views;
}

const separators = (text: string) => [...text].filter((char) => char === '/' || char === '\\').length;

describe('S3 paths (property)', () => {
  it('S3: no accepted path percent-decodes and NFKC-normalises to one with a dot segment or an extra separator', () => {
    fc.assert(
      fc.property(paths, (path) => {
        if (pathProblem(path) !== undefined) return;
        const rawSeparators = separators(path);
        for (const view of upstreamViews(path)) {
          expect(separators(view)).toBe(rawSeparators);
          const segments = view.split('/').map((segment) => segment.split(';')[0]);
          expect(segments).not.toContain('.');
          expect(segments).not.toContain('..');
        }
      }),
      fuzzSettings(2_000),
    );
  });

  it('S3: a path encoded twice or three times, character by character, is refused like the once-encoded one', () => {
    for (const path of [
      '/v2/%25%32%65%25%32%65/admin',
      '/v2/%25ef%25bc%258e%25ef%25bc%258e/admin',
      '/v2/%25%32%35%25%33%32%25%36%35%25%32%35%25%33%32%25%36%35/admin',
      '/v2/%25%32%66admin',
    ])
      expect(pathProblem(path), path).toBeDefined();
    for (const path of ['/v2/100%25', '/v2/50%25off', '/v2/a%2520b', '/v2/%25ff', '/v2/file%2525json.bak'])
      expect(pathProblem(path), path).toBeUndefined();
  });

  it('S3: a "%" that is no escape but turns into one once a lenient decoder decodes what follows it is refused', () => {
    for (const path of ['/a/%%32%65%%32%65/x', '/a/%2%65%2%65/x', '/v2/%25%2532%2565/admin', '/v2/%%36%36'])
      expect(pathProblem(path), path).toBeDefined();
    for (const path of ['/v2/100%25', '/v2/50%25off', '/v2/100%25/x', '/v2/a%25%20b'])
      expect(pathProblem(path), path).toBeUndefined();
  });

  it('S3: the generator does reach both sides (some paths accepted, look-alikes refused)', () => {
    const sample = fc.sample(paths, { numRuns: 500, seed: 7 });
    expect(sample.filter((path) => pathProblem(path) === undefined).length).toBeGreaterThan(50);
    expect(sample.filter((path) => pathProblem(path) !== undefined).length).toBeGreaterThan(50);
    expect(LOOK_ALIKES).toEqual(expect.arrayContaining([0xff0e, 0xff0f, 0xff3c, 0x2024, 0xfe52]));
  });
});
