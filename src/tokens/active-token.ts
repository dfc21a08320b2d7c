import { inspect } from 'node:util';
import type { Secret } from '../util/secret.js';

/**
 * The token in use. The `Authorization` value is built once per token, not per request,
 * because the proxy reads it on every request (T2: no await, no I/O, no allocation).
 */
export class ActiveToken {
  readonly #authorization: string;
  readonly fingerprint: string;

  constructor(
    readonly secret: Secret,
    /** Counts tokens obtained by this process: a 401 for an old generation is not news (T8). */
    readonly generation: number,
    readonly obtainedAt: number,
    readonly expiresAt: number,
    readonly lifetimeMs: number,
  ) {
    this.#authorization = `Bearer ${secret.reveal()}`;
    this.fingerprint = secret.fingerprint();
  }

  authorizationHeader(): string {
    return this.#authorization;
  }

  toJSON(): Record<string, unknown> {
    return {
      fingerprint: this.fingerprint,
      generation: this.generation,
      expiresAt: new Date(this.expiresAt).toISOString(),
    };
  }

  [inspect.custom](): string {
    return `ActiveToken(${this.fingerprint}, generation ${this.generation})`;
  }
}
