import type { Secret } from './secret.js';

/** R4: at most this many characters of server-provided text are kept. */
export const MAX_SERVER_TEXT_CHARS = 200;

const REDACTED = '[redacted]';

/**
 * C0 controls (CR, LF, NUL, ESC, ...), DEL, C1 controls (0x80-0x9f: CSI 0x9b starts a terminal
 * escape in some terminals), and the Unicode bidirectional overrides, isolates and line/paragraph
 * separators (text that reads differently from what it is).
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** What JSON.stringify leaves raw of UNSAFE_CHARACTERS (it escapes C0 itself). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Escapes every control character and terminal or bidi escape in `text` as a visible `\n`, `\r`,
 * `\t` or `\u00XX` sequence, so the text stays on one line and cannot steer a terminal or forge
 * a log line (R4). Printable characters, including non-ASCII letters, are kept.
 */
export function escapeControlCharacters(text: string): string {
  return text.replace(
    UNSAFE_CHARACTERS,
    (char) => NAMED_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * R4 for JSON log lines: escapes, as JSON `\\uXXXX` escapes (the same characters once parsed), the
 * terminal and bidi controls that JSON.stringify leaves raw, so `tail -f` on a log is safe too.
 */
export function escapeJsonLine(line: string): string {
  return line.replace(UNSAFE_IN_JSON, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The forms a secret can take when a server quotes back what it was sent: as is, JSON-escaped
 * (a JSON body), percent-encoded (a form body or URL: `%20` and `+` for a space).
 */
function spellingsOf(value: string): string[] {
  const spellings = new Set([value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]);
  spellings.add(new URLSearchParams({ v: value }).toString().slice(2));
  return [...spellings].filter((spelling) => spelling !== '');
}

/**
 * R4: makes server-provided text (an error message, `error_description`, a quoted body) safe to
 * store, log, show in `/status`/`/readyz` and put in an error body:
 * 1. every spelling of every secret in `secrets` (what the account holds and what was just sent:
 *    password, client secret, refresh and access tokens, assertions, whole Authorization values)
 *    becomes `[redacted]`, longest first so a secret that contains another is replaced whole;
 * 2. control characters and terminal escapes are escaped (`escapeControlCharacters`);
 * 3. at most `maxChars` characters are kept, with `…` marking a cut.
 * Redaction runs before the cut, so a cut can never leave part of a secret behind.
 *
 * @param text any string from a server (may be huge: it is bounded here)
 * @param secrets the secrets to hide; undefined entries are skipped
 * @param maxChars characters kept (default 200, R4)
 */
export function scrubServerText(
  text: string,
  secrets: Iterable<Secret | undefined>,
  maxChars = MAX_SERVER_TEXT_CHARS,
): string {
  const spellings: string[] = [];
  for (const secret of secrets) if (secret !== undefined) spellings.push(...spellingsOf(secret.reveal()));
  spellings.sort((a, b) => b.length - a.length);
  let redacted = text;
  for (const spelling of spellings) redacted = redacted.split(spelling).join(REDACTED);
  const escaped = escapeControlCharacters(redacted);
  if (escaped.length <= maxChars) return escaped;
  // Never end on half of a surrogate pair.
  const end = /[\ud800-\udbff]/.test(escaped.charAt(maxChars - 1)) ? maxChars - 1 : maxChars;
  return `${escaped.slice(0, end)}…`;
}
