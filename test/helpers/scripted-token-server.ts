import { randomUUID } from 'node:crypto';
import type { TokenHttpRequest, TokenHttpResponse } from '../../src/flows/types.js';
import { TokenTransportError } from '../../src/flows/http-client.js';

export type Behaviour =
  { type: 'ok' } | { type: 'status'; status: number; body?: string } | { type: 'refuse' } | { type: 'reject-login' };

export interface SentRequest {
  kind: 'login' | 'refresh';
  at: number;
  refreshToken?: string;
}

/**
 * An in-memory session-dialect token server to plug into TokenManager's `send`: no sockets,
 * so the token engine's logic can be driven by a fake clock alone. It rotates single-use
 * refresh tokens and records every request, including any reuse of a spent refresh token.
 */
export class ScriptedTokenServer {
  readonly sent: SentRequest[] = [];
  readonly issuedTokens: string[] = [];
  reuse = 0;
  behaviour: Behaviour = { type: 'ok' };
  /** What goes in `tokenLifetime` (undefined leaves it out). */
  lifetime: unknown = 60;
  extraFields: Record<string, unknown> = {};
  dateHeader: (() => string) | undefined;
  readonly #live = new Set<string>();
  readonly #spent = new Set<string>();

  constructor(private readonly now: () => number) {}

  send = async (request: TokenHttpRequest, _options?: unknown): Promise<TokenHttpResponse> => {
    const body = JSON.parse(request.body) as Record<string, unknown>;
    const refreshToken = typeof body.refreshToken === 'string' ? body.refreshToken : undefined;
    const kind = refreshToken === undefined ? 'login' : 'refresh';
    this.sent.push({ kind, at: this.now(), refreshToken });
    const behaviour = this.behaviour;
    if (behaviour.type === 'refuse') throw new TokenTransportError('ECONNREFUSED', 'connection refused');
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
    const token = `tok-${randomUUID()}`;
    const nextRefresh = `ref-${randomUUID()}`;
    this.#live.add(nextRefresh);
    this.issuedTokens.push(token);
    const payload: Record<string, unknown> = { success: true, token, refreshToken: nextRefresh, ...this.extraFields };
    if (this.lifetime !== undefined) payload.tokenLifetime = this.lifetime;
    return this.#answer(200, JSON.stringify(payload));
  };

  count(kind?: 'login' | 'refresh'): number {
    return kind === undefined ? this.sent.length : this.sent.filter((request) => request.kind === kind).length;
  }

  #answer(status: number, body: string): TokenHttpResponse {
    const headers: TokenHttpResponse['headers'] = { 'content-type': 'application/json' };
    if (this.dateHeader !== undefined) headers.date = this.dateHeader();
    return { status, headers, body };
  }
}
