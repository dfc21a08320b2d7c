import { randomUUID } from 'node:crypto';
import type { TokenHttpRequest, TokenHttpResponse } from '../../src/flows/types.js';
import { TokenTransportError } from '../../src/flows/http-client.js';

/** What the server does with a request: answer normally, or one of the faults a test scripts. */
export type Behaviour =
  | { type: 'ok' }
  | { type: 'status'; status: number; body?: string }
  | { type: 'refuse' }
  | { type: 'reject-login' }
  /** The request fails in transport with this code (`ECONNREFUSED`, `timeout`, a TLS code, ...). */
  | { type: 'transport-error'; code: string; message: string }
  /** A normal answer with no new refresh token in it (the spent one is still spent). */
  | { type: 'omit-refresh-token' }
  /** A normal answer, given only once `until` resolves. */
  | { type: 'hold'; until: Promise<void> };

/** Transport faults by name, as `failNext` takes them. */
const TRANSPORT_FAULTS = {
  refused: { code: 'ECONNREFUSED', message: 'connection refused' },
  timeout: { code: 'timeout', message: 'no answer in time' },
  tls: { code: 'DEPTH_ZERO_SELF_SIGNED_CERT', message: 'self-signed certificate' },
} as const;

export interface SentRequest {
  kind: 'login' | 'refresh';
  at: number;
  refreshToken?: string;
  /** The request body as sent. */
  body: string;
}

/**
 * An in-memory token server to plug into TokenManager's `send`: no sockets, so the token
 * engine's logic can be driven by a fake clock alone. It speaks the session dialect (and reads
 * an oauth2 form body well enough to tell a refresh from a login), rotates single-use refresh
 * tokens and records every request, including any reuse of a spent refresh token.
 *
 * What it does is scripted, never patched: `behaviour` is what it does from now on; `next`,
 * `rejectNext`, `failNext`, `omitRefreshTokenNext` and `holdNext` queue what it does to the next
 * requests, one entry per request, before `behaviour` applies again.
 */
export class ScriptedTokenServer {
  readonly sent: SentRequest[] = [];
  readonly issuedTokens: string[] = [];
  reuse = 0;
  /** What every request gets once the scripted queue is empty. */
  behaviour: Behaviour = { type: 'ok' };
  /** What goes in `tokenLifetime` (undefined leaves it out). */
  lifetime: unknown = 60;
  extraFields: Record<string, unknown> = {};
  dateHeader: (() => string) | undefined;
  readonly #script: Behaviour[] = [];
  readonly #live = new Set<string>();
  readonly #spent = new Set<string>();

  constructor(private readonly now: () => number) {}

  /** Queues `behaviour` for the next `times` requests. */
  next(behaviour: Behaviour, times = 1): this {
    for (let i = 0; i < times; i++) this.#script.push(behaviour);
    return this;
  }

  /** The next request is refused as a session server does: 401 `{ success: false, message }`. */
  rejectNext(message: string): this {
    return this.next({ type: 'status', status: 401, body: JSON.stringify({ success: false, message }) });
  }

  /** The next `times` requests fail in transport, never reaching the token logic. */
  failNext(times: number, fault: keyof typeof TRANSPORT_FAULTS): this {
    return this.next({ type: 'transport-error', ...TRANSPORT_FAULTS[fault] }, times);
  }

  /** The next request is answered with a token but no new refresh token. */
  omitRefreshTokenNext(): this {
    return this.next({ type: 'omit-refresh-token' });
  }

  /** The next request is answered only when the returned function is called. */
  holdNext(): () => void {
    let release: () => void = () => undefined;
    this.next({ type: 'hold', until: new Promise<void>((resolve) => (release = resolve)) });
    return () => release();
  }

  send = async (request: TokenHttpRequest, _options?: unknown): Promise<TokenHttpResponse> => {
    const refreshToken = refreshTokenOf(request.body);
    const kind = refreshToken === undefined ? 'login' : 'refresh';
    this.sent.push({ kind, at: this.now(), refreshToken, body: request.body });
    const behaviour = this.#script.shift() ?? this.behaviour;
    if (behaviour.type === 'hold') await behaviour.until;
    if (behaviour.type === 'refuse') throw new TokenTransportError('ECONNREFUSED', 'connection refused');
    if (behaviour.type === 'transport-error') throw new TokenTransportError(behaviour.code, behaviour.message);
    if (behaviour.type === 'status') return this.#answer(behaviour.status, behaviour.body ?? '{}');
    if (behaviour.type === 'reject-login' && kind === 'login')
      return this.#answer(401, '{"success":false,"message":"invalid credentials"}');
    if (refreshToken !== undefined) {
      if (this.#spent.has(refreshToken)) this.reuse += 1;
      if (!this.#live.has(refreshToken))
        return this.#answer(401, '{"success":false,"message":"refresh token already used"}');
      this.#live.delete(refreshToken);
      this.#spent.add(refreshToken);
    }
    return this.#issue(behaviour.type !== 'omit-refresh-token');
  };

  count(kind?: 'login' | 'refresh'): number {
    return kind === undefined ? this.sent.length : this.sent.filter((request) => request.kind === kind).length;
  }

  #issue(withRefreshToken: boolean): TokenHttpResponse {
    const token = `tok-${randomUUID()}`;
    this.issuedTokens.push(token);
    const nextRefresh = `ref-${randomUUID()}`;
    if (withRefreshToken) this.#live.add(nextRefresh);
    const payload: Record<string, unknown> = { success: true, token, refreshToken: nextRefresh, ...this.extraFields };
    if (!withRefreshToken) delete payload.refreshToken;
    if (this.lifetime !== undefined) payload.tokenLifetime = this.lifetime;
    return this.#answer(200, JSON.stringify(payload));
  }

  #answer(status: number, body: string): TokenHttpResponse {
    const headers: TokenHttpResponse['headers'] = { 'content-type': 'application/json' };
    if (this.dateHeader !== undefined) headers.date = this.dateHeader();
    return { status, headers, body };
  }
}

/** The refresh token a request spends: the session dialect's JSON `refreshToken`, or an oauth2 form's `refresh_token`. */
function refreshTokenOf(body: string): string | undefined {
  if (body.trimStart().startsWith('{')) {
    const json = JSON.parse(body) as Record<string, unknown>;
    return typeof json.refreshToken === 'string' ? json.refreshToken : undefined;
  }
  return new URLSearchParams(body).get('refresh_token') ?? undefined;
}
