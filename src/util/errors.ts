/**
 * The sidecar's own error catalogue (issue 20): every error it raises on purpose carries one of
 * these stable codes in `.code` (the values say what each means; docs/errors.md says more), as undici's `UND_ERR_*` and fastify's `FST_ERR_*` do. Code tells
 * errors apart by `.code` (or `hasCode`), never by message text. Each code is documented in
 * docs/errors.md, and a test keeps the two in step.
 *
 * These are internal errors (logs, exit codes); the JSON errors clients see on the data plane are
 * the F5 codes in proxy/errors.ts.
 */
export const ERROR_CODES = {
  BS_ERR_USAGE: 'The command line is not valid: exit 2 with a suggestion.',
  BS_ERR_CONFIG: 'The configuration is not valid: exit 2, one line per problem naming its path.',
  BS_ERR_UNSAFE_FILE: 'A file is not a regular file, is too large, or cannot be read without blocking.',
  BS_ERR_EMPTY_SECRET: 'A secret is empty.',
  BS_ERR_STORE_KEY: 'The store encryption key cannot be used (size or file).',
  BS_ERR_CLIENT_CERTIFICATE: 'A client certificate for mutual TLS cannot be used (file, form, or not a pair).',
  BS_ERR_SIGNING_KEY: 'A key that signs client assertions cannot be used (file, form or algorithm).',
  BS_ERR_STATE_FILE: 'The token state file cannot be used and could not be set aside.',
  BS_ERR_STORE_FORMAT: 'A stored token record cannot be decoded; it is set aside.',
  BS_ERR_STORE_UNAVAILABLE: 'The shared store cannot be reached; the valid token keeps being served.',
  BS_ERR_TOKEN_TRANSPORT: 'No complete answer came from a token endpoint; `transportCode` says why.',
  BS_ERR_CREDENTIAL_UNAVAILABLE: 'A credential the token request needs is not there: a rejected login.',
  BS_ERR_TOKEN_UNAVAILABLE: 'No valid token came in time: 503 token_unavailable with Retry-After.',
  BS_ERR_TOKEN_NOT_HEADER_SAFE: 'A token cannot travel in an HTTP header, so it is never sent.',
  BS_ERR_UPSTREAM_TIMEOUT: 'A WebSocket upgrade got no connection or no answer in time: 504 upstream_timeout.',
  BS_ERR_PROXY_TUNNEL: 'The egress proxy refused the tunnel a WebSocket upgrade asked for: 502.',
  BS_ERR_AUTHORIZE: '`bearer-sidecar authorize` did not complete: exit 1.',
  BS_ERR_INTERNAL: 'A state the code rules out was reached: a bug, reported and contained.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Base of every error the sidecar raises on purpose. `code` is stable (grep for it); `message`
 * is for people and may change.
 */
export class SidecarError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** True when `error` is a SidecarError with `code`. */
export function hasCode(error: unknown, code: ErrorCode): error is SidecarError {
  return error instanceof SidecarError && error.code === code;
}

/** The message of anything thrown (an Error's message, else its text): no `as Error` casts. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An Error for anything thrown, for APIs that need one (an abort reason, a cause). */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * The string `code` a thrown Error carries (a Node errno such as `ENOENT`, an undici or a catalogue
 * code), or undefined: the one place that reads it, for logs and for errno checks.
 */
export function errnoOf(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}
