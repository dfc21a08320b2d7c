import { createHash } from 'node:crypto';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A string that must never be printed. Every way JavaScript turns a value into text
 * (template strings, JSON.stringify, util.inspect, pino) yields "[redacted]"; the only
 * way to the value is an explicit `reveal()`, which is easy to grep for.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  /** First 8 hex digits of the SHA-256: safe to show, enough to tell two tokens apart (F6). */
  fingerprint(): string {
    return fingerprint(this.#value);
  }

  equals(other: Secret | undefined): boolean {
    return other !== undefined && other.#value === this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** SHA-256 of `value`, as 64 hex characters: how secrets are compared and remembered without keeping them. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

export function fingerprint(value: string): string {
  return sha256Hex(value).slice(0, 8);
}
